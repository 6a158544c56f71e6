"""Batch throughput on the embedded default (SQLite file, in-process broker), against the local HTTP
test provider (providers/tests/openai_server.py, on 127.0.0.1 only):

- batch: `manage.py batch_run` as a child process runs N items as one batch (it runs the worker
  threads itself on the embedded default) and writes them to a JSONL file;
- baseline: the same N items as sequential `run_create` + `run_execute` calls in this process,
  without the batch machinery (no broker round trip, no dispatch, no output file).

Prints items/second of both and their ratio, and the command's peak memory (ru_maxrss of the child).

    .venv/bin/python bench/batch_throughput.py [--items 1000] [--concurrency 8] [--provider-delay 0]

With --provider-delay S every model call takes S seconds, as a real model would; concurrency then
pays off, where with an instant provider the shared SQLite write lock is the limit.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    try:
        run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--provider-delay", type=float, default=0.0, help="Seconds per model call.")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "llmops.settings",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-not-a-secret"),
        "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "text",
        "RUN_RECOVER_INTERVAL_S": "0",
        "RATE_LIMIT_ENABLED": "false",
        "METRICS_ENABLED": "false",
        "DRAMATIQ_PROMETHEUS": "0",
    }
    env.pop("REDIS_URL", None)  # the embedded default
    os.environ.clear()
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))

    import django

    django.setup()
    from django.core.management import call_command

    from accounts.models import User
    from prompts import services as prompt_services
    from providers.models import Provider
    from providers.tests.openai_server import OpenAIServer, slow
    from runs import services as run_services
    from runs.models import Batch, Run

    call_command("migrate", verbosity=0)
    user = User.objects.create_user(username="bench", password=None)
    project = user.personal_project
    server = OpenAIServer().start()
    Provider.objects.create(name="bench", kind=Provider.Kind.OPENAI_COMPATIBLE, base_url=server.url, timeout=30)
    prompt_services.prompt_create(
        project=project,
        created_by=user,
        name="bench",
        template="Say hello to {{ name }}.",
        variables={"name": {"type": "string"}},
        model="bench/test-model",
        params={"max_tokens": 16},
    )

    def delay_calls(count: int) -> None:
        if args.provider_delay:
            server.enqueue(*[slow(args.provider_delay, "Hello there.") for _ in range(count)])

    source, output = work / "rows.jsonl", work / "results.jsonl"
    with source.open("w") as f:
        for i in range(args.items):
            f.write(json.dumps({"variables": {"name": f"person {i}"}, "key": f"row-{i}"}) + "\n")

    print(
        f"{args.items} items, concurrency {args.concurrency}, provider delay {args.provider_delay}s, "
        f"embedded default (SQLite), {os.cpu_count()} CPUs"
    )
    delay_calls(args.items)
    command = [
        sys.executable, "manage.py", "batch_run", "bench", "--owner", "bench", "--input", str(source),
        "--output", str(output), "--concurrency", str(args.concurrency), "--wait", "--no-progress",
    ]  # fmt: skip
    started = time.perf_counter()
    child = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    batch_seconds = time.perf_counter() - started
    if child.returncode != 0:
        sys.exit(f"batch_run failed ({child.returncode}):\n{child.stdout}\n{child.stderr}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    written = sum(1 for _ in output.open())
    batch = Batch.objects.get()
    assert batch.finished_at is not None
    running_seconds = (batch.finished_at - batch.created_at).total_seconds()
    print(child.stdout.strip().splitlines()[-1])
    print(
        f"batch_run:  {args.items / batch_seconds:8.1f} items/s end to end ({batch_seconds:.1f} s, process start "
        f"included); {args.items / running_seconds:.1f} items/s from created to completed ({running_seconds:.1f} s)"
    )
    print(f"            peak memory of the command (ru_maxrss): {peak_kib / 1024:.1f} MiB; {written} lines written")

    if args.skip_baseline:
        server.stop()
        return
    delay_calls(args.items)
    started = time.perf_counter()
    for i in range(args.items):
        run, _ = run_services.run_create(
            project=project, created_by=user, api_key=None, prompt="bench", variables={"name": f"person {i}"}
        )
        run_services.run_execute(run_id=str(run.pk))
    baseline_seconds = time.perf_counter() - started
    server.stop()
    succeeded = Run.objects.filter(batch__isnull=True, status=Run.Status.SUCCEEDED).count()
    print(
        f"baseline:   {args.items / baseline_seconds:8.1f} items/s ({baseline_seconds:.1f} s): sequential "
        f"run_create + run_execute in one process, {succeeded} succeeded"
    )
    print(f"ratio:      batch_run / baseline = {baseline_seconds / batch_seconds:.2f} (end to end), "
          f"{baseline_seconds / running_seconds:.2f} (created to completed)")  # fmt: skip


if __name__ == "__main__":
    main()
