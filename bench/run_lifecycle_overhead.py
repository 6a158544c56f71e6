"""What the reliability of a run costs: its outbox marker, its lease and its finish hook.

    .venv/bin/python bench/run_lifecycle_overhead.py [--runs 400] [--block 20]

Creates and executes runs in this process (run_create, then run_execute as the actor would), against
the local OpenAI-compatible test server answering at once, on the settings the environment gives (the
embedded default: SQLite and the in-process broker; set DATABASE_URL for PostgreSQL) and a throwaway
test database. Two modes take turns in blocks, so load from other processes hits both alike:

- `reliable`: the code as it is: after commit the message is sent and `enqueued_at` marked (one
  UPDATE), the claim takes a lease that the heartbeat thread would renew, and the finish looks up
  the run's batch item to dispatch its batch.
- `baseline`: the same run without those three: the message is sent and nothing marked, no lease is
  held, no batch lookup (what a run cost before the outbox and leases, minus their guarantees).

Prints the median block of each as runs per second and milliseconds per run, and their ratio.
"""

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("EMBEDDED_WORKER", "0")
os.environ.setdefault("RUN_RECOVER_INTERVAL_S", "0")
os.environ["REDIS_URL"] = ""  # the in-process broker: the bench measures our code, not Redis

import django  # noqa: E402

django.setup()

import dramatiq  # noqa: E402
from django.db import connection  # noqa: E402

from accounts.tests.factories import UserFactory  # noqa: E402
from prompts.tests.factories import prompt_with_version  # noqa: E402
from providers.models import Provider  # noqa: E402
from providers.tests.openai_server import OpenAIServer  # noqa: E402
from runs import leases, services  # noqa: E402
from runs.models import Run  # noqa: E402


def _send_only(run_id, delay_ms=None):  # type: ignore[no-untyped-def]
    from runs.tasks import execute_run

    execute_run.send_with_options(args=(str(run_id),), delay=delay_ms)
    return True


@contextlib.contextmanager
def _baseline():  # type: ignore[no-untyped-def]
    saved = (services._enqueue, leases.held, services._dispatch_its_batch_on_commit)
    services._enqueue = _send_only  # type: ignore[assignment]
    leases.held = lambda run_id, attempt: contextlib.nullcontext()  # type: ignore[assignment]
    services._dispatch_its_batch_on_commit = lambda run: None  # type: ignore[assignment]
    try:
        yield
    finally:
        services._enqueue, leases.held, services._dispatch_its_batch_on_commit = saved  # type: ignore[assignment]


def _block(project, prompt_id: str, count: int) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for _ in range(count):
        run, _ = services.run_create(
            project=project, created_by=None, api_key=None, prompt=prompt_id, variables={"name": "Ada"}
        )
        services.run_execute(run_id=str(run.pk))
    elapsed = time.perf_counter() - started
    dramatiq.get_broker().flush_all()  # the messages the stub broker kept
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400, help="per mode")
    parser.add_argument("--block", type=int, default=20)
    args = parser.parse_args()
    blocks = max(1, args.runs // args.block)

    server = OpenAIServer().start()
    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        Provider.objects.create(name="bench", kind=Provider.Kind.OPENAI_COMPATIBLE, base_url=server.url, timeout=5)
        user = UserFactory(username="bench")
        project = user.personal_project
        prompt, _ = prompt_with_version(user, name="bench", model="bench/test-model")
        _block(project, str(prompt.pk), args.block)  # warm up: imports, caches, the model listing
        timings: dict[str, list[float]] = {"baseline": [], "reliable": []}
        for index in range(blocks):
            for mode in ("baseline", "reliable") if index % 2 == 0 else ("reliable", "baseline"):
                with _baseline() if mode == "baseline" else contextlib.nullcontext():
                    timings[mode].append(_block(project, str(prompt.pk), args.block))
        succeeded = Run.objects.filter(status=Run.Status.SUCCEEDED).count()
        total = Run.objects.count()
    finally:
        connection.creation.destroy_test_db(test_db, verbosity=0)
        server.stop()

    assert succeeded == total, f"{total - succeeded} run(s) did not succeed"
    per_run = {mode: statistics.median(rows) / args.block for mode, rows in timings.items()}
    print(f"database {connection.vendor}; {blocks} blocks of {args.block} runs per mode (create + execute), median")
    for mode in ("baseline", "reliable"):
        print(f"{mode + ':':9} {1 / per_run[mode]:7.1f} runs/s, {per_run[mode] * 1000:6.2f} ms per run")
    print(
        f"ratio reliable/baseline: time per run {per_run['reliable'] / per_run['baseline']:.3f} "
        f"({(per_run['reliable'] - per_run['baseline']) * 1000:+.2f} ms per run)"
    )


if __name__ == "__main__":
    main()
