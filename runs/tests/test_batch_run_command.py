"""`manage.py batch_run`: in process, and as a subprocess interrupted half-way then rerun, against the
real HTTP test provider. Every item ends up in the output exactly once."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from prompts.tests.factories import prompt_with_version
from providers.tests.openai_server import error, slow
from runs.management.commands.batch_run import done_keys, output_summary
from runs.models import Batch, Run

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def version(alice, provider_factory):
    provider_factory(name="testllm", timeout=5.0)
    _, version = prompt_with_version(alice, name="greet", model="testllm/test-model")
    return version


def _write_jsonl(path, count, start=0):
    with path.open("w") as f:
        for i in range(start, start + count):
            f.write(json.dumps({"variables": {"name": f"n{i}"}, "key": f"k{i}"}) + "\n")
    return path


def _output(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_runs_every_row_writes_results_and_a_rerun_does_nothing(
    alice, version, openai_server, worker, tmp_path, capsys
):
    openai_server.enqueue(error(400, '{"error": {"message": "no"}}'))
    source = tmp_path / "rows.csv"
    source.write_text("name,key\n" + "".join(f"n{i},k{i}\n" for i in range(6)))
    output = tmp_path / "out.jsonl"

    call_command("batch_run", "greet", owner="alice", input=str(source), output=str(output), concurrency=2, wait=True)

    results = _output(output)
    assert sorted(r["key"] for r in results) == [f"k{i}" for i in range(6)]
    assert sorted(r["status"] for r in results) == ["failed"] + ["succeeded"] * 5
    assert len(openai_server.chat_requests()) == 6
    batch = Batch.objects.get()
    assert (batch.status, batch.item_count, batch.concurrency) == (Batch.Status.COMPLETED, 6, 2)
    out = capsys.readouterr().out
    assert f"Batch {batch.pk}: 6 item(s) submitted, 0 already in" in out
    assert "failed 1, succeeded 5" in out and "p95" in out

    call_command("batch_run", "greet", owner="alice", input=str(source), output=str(output), wait=True)

    assert "Nothing to do: all 6 items are already in" in capsys.readouterr().out
    assert Batch.objects.count() == 1
    assert len(_output(output)) == 6


def test_a_rerun_submits_only_missing_keys_and_drops_a_torn_line(alice, version, openai_server, worker, tmp_path):
    source = _write_jsonl(tmp_path / "rows.jsonl", 5)
    output = tmp_path / "out.jsonl"
    done = {"key": "k1", "status": "succeeded", "usage": None, "cost": None, "latency_ms": 5}
    output.write_text(json.dumps(done) + "\n" + '{"key": "k2", "sta')  # k2's line was torn by a kill

    call_command("batch_run", "greet@1", owner="alice", input=str(source), output=str(output), wait=True)

    keys = [r["key"] for r in _output(output)]
    assert sorted(keys) == ["k0", "k1", "k2", "k3", "k4"]
    assert keys[0] == "k1"
    assert Batch.objects.get().item_count == 4
    assert len(openai_server.chat_requests()) == 4


def test_invalid_rows_fail_the_command_and_create_nothing(alice, version, tmp_path):
    source = tmp_path / "rows.jsonl"
    source.write_text('{"name": "Ada"}\n{"nom": "Bob"}\n')

    with pytest.raises(CommandError) as caught:
        call_command("batch_run", "greet", owner="alice", input=str(source), output=str(tmp_path / "o.jsonl"))

    assert "items.2.variables.nom" in str(caught.value)
    assert Batch.objects.count() == 0
    with pytest.raises(CommandError, match="No user named"):
        call_command("batch_run", "greet", owner="nobody", input=str(source), output=str(tmp_path / "o.jsonl"))


def test_output_summary_percentiles(tmp_path):
    output = tmp_path / "out.jsonl"
    lines = [
        {
            "key": str(i),
            "status": "succeeded",
            "run": {"usage": {"total_tokens": 2}, "cost": {"amount": "0.5"}, "latency_ms": i},
        }
        for i in range(1, 101)
    ]
    output.write_text("".join(json.dumps(line) + "\n" for line in lines))

    summary = output_summary(output)

    assert summary["counts"] == {"succeeded": 100}
    assert (summary["total_tokens"], str(summary["cost"])) == (200, "50.0")
    assert (summary["p50_ms"], summary["p95_ms"]) == (50, 95)
    assert done_keys(output) == {str(i) for i in range(1, 101)}


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _command(source, output):
    env = {**os.environ, "DATABASE_URL": _database_url(), "DRAMATIQ_PROMETHEUS": "0", "LOG_LEVEL": "WARNING"}
    return subprocess.Popen(  # noqa: S603 (our own command line)
        [sys.executable, "manage.py", "batch_run", "greet", "--owner", "alice", "--input", str(source),
         "--output", str(output), "--concurrency", "2", "--wait", "--no-progress", "--poll", "0.1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


@pytest.mark.slow
def test_interrupted_half_way_then_rerun_writes_every_item_exactly_once(
    alice, version, openai_server, worker, tmp_path
):
    items = 30
    openai_server.enqueue(*[slow(0.15, f"answer {i}") for i in range(items * 2)])
    source = _write_jsonl(tmp_path / "rows.jsonl", items)
    output = tmp_path / "out.jsonl"

    first = _command(source, output)
    deadline = time.monotonic() + 60
    while not (output.exists() and len(output.read_text().splitlines()) >= 6):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "no results appeared"
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    stdout, stderr = first.communicate(timeout=60)

    assert first.returncode == 130, (stdout, stderr)
    assert "Interrupted: batch" in stderr and "Run the same command again" in stderr
    written = output.read_text()
    assert written.endswith("\n")
    partial = [json.loads(line) for line in written.splitlines()]  # every line whole
    assert 6 <= len(partial) < items
    assert len({r["key"] for r in partial}) == len(partial)
    assert {r["status"] for r in partial} == {"succeeded"}
    interrupted = Batch.objects.get()
    assert interrupted.status == Batch.Status.CANCELED
    assert not Run.objects.filter(batch_item__batch=interrupted, status__in=["queued", "running"]).exists()

    second = _command(source, output)
    stdout, stderr = second.communicate(timeout=120)

    assert second.returncode == 0, (stdout, stderr)
    assert f"{items - len(partial)} item(s) submitted, {len(partial)} already in" in stdout
    results = _output(output)
    assert sorted(r["key"] for r in results) == sorted(f"k{i}" for i in range(items))  # each exactly once
    assert {r["status"] for r in results} == {"succeeded"}
    rerun = Batch.objects.exclude(pk=interrupted.pk).get()
    assert (rerun.status, rerun.item_count) == (Batch.Status.COMPLETED, items - len(partial))
    assert f"Summary of {output} ({items} item(s)): succeeded {items}" in stdout
