"""The production shape in processes, for fault tests: a Redis server of the test's own (so it can
be killed and restarted without touching anyone else's), gunicorn serving the API, and
`manage.py rundramatiq` workers, all on the test database. Tests kill and restart them."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The test database, as DATABASE_URL for another process."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, *, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


class Process:
    """A child process in its own session (so a kill reaches its children too), logging to var/."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.log_path = ROOT / "var" / f"test-faults-{name}-{os.getpid()}.log"
        self.log_path.parent.mkdir(exist_ok=True)  # the settings make var/ only for SQLite
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole process group: the machine lost, the OOM killer, `kill -9`."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM to the main process, as a deploy or `docker stop` sends it; waits for the exit."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        if self.alive():
            with_group = True
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=15)
                with_group = False
            except subprocess.TimeoutExpired:
                pass
            if with_group:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


class Stack:
    """Redis, a web server and workers on the test database; `close()` stops whatever is left."""

    def __init__(self, **env: str) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.redis_port = free_port()
        self.web_port = free_port()
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "SECRET_KEY": "test-faults-secret",
            "DEBUG": "false",
            "DRAMATIQ_PROMETHEUS": "0",
            "RATE_LIMIT_ENABLED": "false",
            "LOG_FORMAT": "text",
            # Fault-test timescales: leases and recovery in seconds, not the production minutes.
            "RUN_LEASE_S": "3",
            "RUN_RECOVER_INTERVAL_S": "1",
            "RUN_RELAY_AFTER_S": "1",
            "RUN_RECOVER_QUEUED_AFTER_S": "5",
            **env,
        }
        self.redis: Process | None = None
        self.web: Process | None = None
        self.workers: list[Process] = []

    def start_redis(self) -> None:
        """A fresh, empty Redis on the same port each time (it keeps nothing on disk)."""
        self.redis = Process(
            "redis",
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            self.env,
        )
        wait_until(self._redis_up, timeout=10, what="redis-server started")

    def _redis_up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start_web(self) -> None:
        argv = [sys.executable, "-m", "gunicorn", "llmops.wsgi:application", "--bind", f"127.0.0.1:{self.web_port}"]
        argv += ["--workers", "2", "--threads", "4", "--timeout", "60", "--no-control-socket"]
        self.web = Process("web", argv, self.env)
        wait_until(lambda: self.get("/api/v1/health")[0] in (200, 503), timeout=30, what="gunicorn serving")

    def start_worker(self, *, threads: int = 4, shutdown_timeout_ms: int | None = None) -> Process:
        argv = [sys.executable, "manage.py", "rundramatiq", "--processes", "1", "--threads", str(threads)]
        if shutdown_timeout_ms is not None:
            argv += ["--worker-shutdown-timeout", str(shutdown_timeout_ms)]
        worker = Process(f"worker{len(self.workers)}", argv, self.env)
        self.workers.append(worker)
        # Consuming once its log says so (the boot takes a few seconds: Django, then the broker).
        wait_until(lambda: "Worker process is ready" in worker.log() or not worker.alive(), timeout=60, what="worker")
        assert worker.alive(), worker.log()
        return worker

    def request(self, method: str, path: str, body: bytes | None = None, **headers: str) -> tuple[int, dict, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.web_port}{path}", data=body, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()
        except OSError:
            return 0, {}, b""

    def get(self, path: str) -> tuple[int, dict, Any]:
        return self.request("GET", path)

    def close(self) -> None:
        for process in [*self.workers, self.web, self.redis]:
            if process is not None:
                process.close()
