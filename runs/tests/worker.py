"""A real Dramatiq worker for tests (a pytest plugin, loaded by the root conftest).

On the embedded default the broker is a StubBroker and the worker runs in threads of the test
process. With REDIS_URL (CI's second pass) the broker is Redis and the worker is a separate
`manage.py rundramatiq` process on the test database, as in production. Tests using it need
committed data: they use `transactional_db`.
"""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from django.db import connection
from dramatiq.brokers.stub import StubBroker

from runs.models import Run

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class _SubprocessWorker:
    def __init__(self) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "RUN_RECOVER_INTERVAL_S": "0",
            # Parallel test runs would fight over the metrics port.
            "DRAMATIQ_PROMETHEUS": "0",
        }
        (ROOT / "var").mkdir(exist_ok=True)  # the settings make var/ only for SQLite
        self.log = open(ROOT / "var" / "test-worker.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", "2"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture(scope="session")
def _dramatiq_worker(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Any]:
    broker = dramatiq.get_broker()
    worker: Any
    if isinstance(broker, StubBroker):
        broker.emit_after("process_boot")
        worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
        worker.start()
        yield worker
        worker.stop()
    else:
        broker.flush_all()
        worker = _SubprocessWorker()
        yield worker
        worker.stop()


@pytest.fixture
def worker(transactional_db: Any, _dramatiq_worker: Any) -> Iterator[Any]:
    """A running worker; queues are emptied before and after the test."""
    broker = dramatiq.get_broker()
    broker.flush_all()
    yield _dramatiq_worker
    broker.flush_all()
    if isinstance(broker, StubBroker):
        # The worker's threads may hold messages they already took (running, or prefetched): those
        # are not in the queues flush_all empties. Wait for them now, while the test's servers still
        # answer, so no test's work runs on into the next test's drain().
        drain(settle=0)
        broker.flush_all()


def drain(*, settle: float = 0.3) -> None:
    """Waits until the broker's queues are empty, then a moment for in-flight messages to finish."""
    broker = dramatiq.get_broker()
    for queue in broker.get_declared_queues():
        broker.join(queue, timeout=20_000)
    time.sleep(settle)


def wait_for_run(run_id: Any, *, timeout: float = 20.0, until: tuple[str, ...] = Run.FINISHED) -> Run:
    """Polls the database until the run reaches one of `until` statuses."""
    deadline = time.monotonic() + timeout
    while True:
        run = Run.objects.get(pk=run_id)
        if run.status in until:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run.status} after {timeout}s")
        time.sleep(0.05)
