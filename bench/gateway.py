"""The OpenAI-compatible gateway (`POST /v1/chat/completions`) against a direct call and against the
LiteLLM proxy, in the production shape: gunicorn, a `rundramatiq` worker, PostgreSQL and Redis.

    .venv/bin/python bench/gateway.py [--scenarios overhead,litellm,upstream200,stream,runwait,enqueue,rss]
                                      [--duration 10] [--concurrency 1,8,32] [--runs 10000]

Needs wrk (`apt-get install -y wrk`), PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and Redis on
127.0.0.1:6379; the LiteLLM scenario needs `sh bench/litellm_setup.sh` first. The runner starts the rest
itself, on free ports, and stops it all at the end: two stubs (bench/stub_server.py: one answering at
once, one after 200 ms), a throwaway database (created, migrated, dropped), a flushed Redis database
(--redis-db, 14), gunicorn (`llmops.wsgi`, gthread, --web-workers x --web-threads), one
`manage.py rundramatiq --processes 1 --threads --worker-threads` worker, and LiteLLM with 1 and 2 workers.
The data is set up as an operator would: `provider set stub` / `stub200` (openai-compatible, the stubs'
/v1), a user `bench` and `createapikey bench`, a price for `stub-model` (so cost entries are written),
prompts `bench` (model stub/stub-model) and `bench200` (stub200/stub-model) created through the API.

Scenarios, each measured in this run (wrk for a duration per figure after a warm-up, or the asyncio
client of bench/loadgen.py where wrk cannot):

- overhead: the same chat request to the stub directly and through /v1/chat/completions at each
  concurrency: req/s, p50/p99, the latency the gateway adds and the throughput ratio.
- litellm: the same through the LiteLLM proxy (no database; `stub-model` on the stub), 1 and 2 workers;
  the best (highest req/s at the top concurrency) is compared with the gateway.
- upstream200: the stub answering after 200 ms, at concurrency 32: gateway req/s / direct req/s.
- stream: `stream: true`, time to the first `data:` event, direct and through the gateway.
- runwait: `POST /api/v1/runs?wait=30` at concurrency 1 (the run executed by the worker on the
  instant stub), against the gateway's (and the direct call's) p50.
- enqueue: --runs runs posted (202) at concurrency 32 as fast as they are accepted, on the 200 ms stub,
  then drained by the worker: enqueue req/s, and the time from the first POST to the last finished run
  against the bound runs x 0.2 s / worker threads.
- rss: peak RSS (VmHWM: since the process started, so over every scenario run before) of each web and
  worker process, after a burst of load of its own.

Until the gateway exists (/v1/chat/completions answers 404) its measurements are skipped, saying so,
and the rest runs. The end prints every target with PASS, MISS or SKIP.
"""

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import loadgen  # bench/ is sys.path[0] when this file runs as a script
from loadgen import Result

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
LITELLM = BENCH / ".litellm-venv" / "bin" / "litellm"
ALL_SCENARIOS = ["overhead", "litellm", "upstream200", "stream", "runwait", "enqueue", "rss"]
MESSAGES = [{"role": "user", "content": "Say hello."}]
UPSTREAM_SLOW_MS = 200
MB = 1_000_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


def http(method: str, url: str, body: Any = None, *, auth: str | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if auth:
        headers["Authorization"] = auth
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - http://127.0.0.1
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


class Process:
    """A child in its own session (a stop reaches its children too), logging to the work folder."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], work: Path, cwd: Path = ROOT) -> None:
        self.name = name
        self.log_path = work / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603
            argv, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self, tail: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def close(self) -> None:
        if self.alive():
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            except ProcessLookupError:
                pass
        self._log.close()


# --- the production shape -------------------------------------------------------------------------------


class Stack:
    """Stubs, database, Redis, gunicorn, a worker and LiteLLM for one bench run; `close()` undoes it all."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.processes: list[Process] = []
        self.db_name = f"bench_gateway_{os.getpid()}"
        self.pg = "postgres://postgres@127.0.0.1:5432"
        self.redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
        self.db_created = False
        self.stub_port = free_port()
        self.stub200_port = free_port()
        self.web_port = free_port()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "llmops.settings",
            "SECRET_KEY": "bench-only-not-a-secret",
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": f"{self.pg}/{self.db_name}",
            "REDIS_URL": self.redis_url,
            # Limits on, as in production, but far above what the bench sends.
            "RATE_LIMIT_REQUESTS": "100000000/m",
            "RATE_LIMIT_RUNS": "100000000/m",
            "DRAMATIQ_PROMETHEUS": "0",  # its fixed port 9191 may be taken; not what is measured
        }
        self.web: Process | None = None
        self.worker: Process | None = None
        self.key = ""
        self.litellm_key = f"sk-bench-{secrets.token_hex(16)}"  # LiteLLM refuses to start without one

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def auth(self) -> str:
        return f"Bearer {self.key}"

    def start(self) -> None:
        self._start_stub("stub", self.stub_port, 0)
        self._start_stub("stub200", self.stub200_port, UPSTREAM_SLOW_MS)
        self._create_database()
        self._flush_redis()
        self.manage("migrate", "--noinput")
        self.manage("shell", "-c", SETUP_SHELL)
        for name, port in (("stub", self.stub_port), ("stub200", self.stub200_port)):
            self.manage(
                "provider",
                "set",
                name,
                "--kind",
                "openai-compatible",
                "--base-url",
                f"http://127.0.0.1:{port}/v1",
                "--timeout",
                "60",
            )
        self.key = self.manage("createapikey", "bench", "--name", "bench").strip().splitlines()[-1]
        self._start_web()
        for name, model in (("bench", "stub/stub-model"), ("bench200", "stub200/stub-model")):
            status, body = http(
                "POST",
                f"{self.web_url}/api/v1/prompts",
                auth=self.auth,
                body={"name": name, "messages": MESSAGES, "model": model, "params": {"max_tokens": 16}},
            )
            if status != 201:
                raise RuntimeError(f"creating prompt {name}: {status} {body[:300]!r}")

    def _start_stub(self, name: str, port: int, latency_ms: int) -> None:
        argv = [sys.executable, str(BENCH / "stub_server.py"), "--port", str(port), "--latency-ms", str(latency_ms)]
        stub = self.spawn(name, argv, self.env)
        wait_until(lambda: http("GET", f"http://127.0.0.1:{port}/v1/models")[0] == 200, timeout=15, what=name)
        assert stub.alive(), stub.log()

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(f"{self.pg}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self.db_created = True

    def _flush_redis(self) -> None:
        import redis

        redis.Redis.from_url(self.redis_url).flushdb()

    def manage(self, *args: str) -> str:
        command = [sys.executable, "manage.py", *args]
        result = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True, check=False)  # noqa: S603
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args[:2])} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def spawn(self, name: str, argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> Process:
        process = Process(name, argv, env, self.work, cwd)
        self.processes.append(process)
        return process

    def _start_web(self) -> None:
        a = self.args
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "llmops.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.web_port}",
            "--worker-class",
            a.web_worker_class,
            "--workers",
            str(a.web_workers),
            "--threads",
            str(a.web_threads),
            "--timeout",
            "90",
            "--keep-alive",
            "5",
            "--no-control-socket",
        ]
        if a.web_reuse_port:
            argv.append("--reuse-port")  # each worker its own listening socket: the kernel spreads connections
        self.web = self.spawn("web", argv, self.env)
        wait_until(
            lambda: http("GET", f"{self.web_url}/api/v1/health")[0] == 200 or not self.web.alive(),  # type: ignore[union-attr]
            timeout=60,
            what="gunicorn serving",
        )
        if not self.web.alive():
            raise RuntimeError(f"gunicorn exited:\n{self.web.log()}")

    def start_worker(self) -> None:
        if self.worker is not None:
            return
        argv = [
            sys.executable,
            "manage.py",
            "rundramatiq",
            "--processes",
            "1",
            "--threads",
            str(self.args.worker_threads),
        ]
        self.worker = self.spawn("worker", argv, self.env)
        wait_until(
            lambda: "Worker process is ready" in self.worker.log() or not self.worker.alive(),  # type: ignore[union-attr]
            timeout=90,
            what="worker ready",
        )
        if not self.worker.alive():
            raise RuntimeError(f"the worker exited:\n{self.worker.log()}")

    def start_litellm(self, workers: int) -> tuple[Process, str]:
        """LiteLLM's proxy with `workers` uvicorn workers, and its URL."""
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(
            {
                "BENCH_STUB_API_BASE": f"http://127.0.0.1:{self.stub_port}/v1",
                "LITELLM_MASTER_KEY": self.litellm_key,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "LITELLM_TELEMETRY_DISABLED": "True",
            }
        )
        argv = [
            str(LITELLM),
            "--config",
            str(BENCH / "litellm_config.yaml"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            str(workers),
        ]
        # cwd: the work folder, so LiteLLM reads no .env of the project.
        process = self.spawn(f"litellm-{workers}", argv, env, cwd=self.work)
        wait_until(
            lambda: http("GET", f"http://127.0.0.1:{port}/health/liveliness")[0] == 200 or not process.alive(),
            timeout=180,
            what=f"LiteLLM ({workers} workers) serving",
            interval=0.5,
        )
        if not process.alive():
            raise RuntimeError(f"LiteLLM exited:\n{process.log()}")
        return process, f"http://127.0.0.1:{port}"

    def stub_served(self, port: int) -> int:
        return int(json.loads(http("GET", f"http://127.0.0.1:{port}/stats")[1])["chat"])

    def sql(self, query: str, *params: Any) -> list[tuple]:
        import psycopg

        with psycopg.connect(f"{self.pg}/{self.db_name}", autocommit=True) as conn:
            return list(conn.execute(query, params).fetchall())

    def close(self) -> None:
        for process in reversed(self.processes):
            process.close()
        if self.db_created:
            import psycopg

            with psycopg.connect(f"{self.pg}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        try:
            self._flush_redis()
        except Exception as exc:  # cleanup: say so, never hide the bench's own error
            print(f"(could not flush {self.redis_url}: {exc})")


# The bench user and a price for the stubs' model: cost entries are written for every run.
SETUP_SHELL = """
import datetime
from decimal import Decimal
from accounts.models import User
from billing.models import ModelPrice
User.objects.create_user(username="bench", password=None)
ModelPrice.objects.create(provider="", model="stub-model", input_per_mtok=Decimal("1"), output_per_mtok=Decimal("2"),
                          effective_from=datetime.date(2000, 1, 1), notes="bench/gateway.py")
"""


# --- measurements --------------------------------------------------------------------------------------


class Bench:
    """The stack, the measurements taken so far (reused across scenarios) and the figures for the targets."""

    def __init__(self, stack: Stack, args: argparse.Namespace) -> None:
        self.stack = stack
        self.args = args
        self.work = stack.work
        self.cache: dict[tuple, Result] = {}
        self.figures: dict[str, Any] = {}
        self.gateway: bool | None = None
        self.gateway_reason = ""

    def body_file(self, name: str, body: dict) -> Path:
        path = self.work / f"{name}.json"
        path.write_text(json.dumps(body))
        return path

    def chat_body(self, model: str, *, stream: bool = False) -> dict:
        body: dict[str, Any] = {"model": model, "messages": MESSAGES, "max_tokens": 16}
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return body

    def wrk(
        self, what: str, url: str, body: dict, concurrency: int, auth: str | None = None, seconds: float | None = None
    ) -> Result:
        key = ("wrk", what, concurrency)
        if key not in self.cache:
            path = self.body_file(what, body)
            if self.args.warmup > 0:
                loadgen.wrk(url, path, concurrency=concurrency, seconds=self.args.warmup, auth=auth)
            self.cache[key] = loadgen.wrk(
                url, path, concurrency=concurrency, seconds=seconds or self.args.duration, auth=auth
            )
        return self.cache[key]

    def direct(self, concurrency: int) -> Result:
        url = f"http://127.0.0.1:{self.stack.stub_port}/v1/chat/completions"
        return self.wrk("direct", url, self.chat_body("stub-model"), concurrency)

    def proxied(self, what: str, url: str, body: dict, concurrency: int, auth: str) -> Result:
        """wrk through a proxy of the instant stub, checking that its answers came from the stub."""
        fresh = ("wrk", what, concurrency) not in self.cache
        served = self.stack.stub_served(self.stack.stub_port)
        result = self.wrk(what, url, body, concurrency, auth=auth)
        reached = self.stack.stub_served(self.stack.stub_port) - served
        if fresh and reached < result.requests:  # (the warm-up's requests reach the stub too)
            print(f"    (!) the stub served {reached} chat requests while {what} answered {result.requests}")
        return result

    def through_gateway(self, concurrency: int) -> Result:
        url = f"{self.stack.web_url}/v1/chat/completions"
        return self.proxied("gateway", url, self.chat_body("stub/stub-model"), concurrency, self.stack.auth)

    def has_gateway(self) -> bool:
        """Whether /v1/chat/completions answers a chat request (once; the reason is kept when it does not)."""
        if self.gateway is None:
            status, body = http(
                "POST",
                f"{self.stack.web_url}/v1/chat/completions",
                self.chat_body("stub/stub-model"),
                auth=self.stack.auth,
            )
            self.gateway = status == 200
            if status == 404:
                self.gateway_reason = "the gateway is not there yet: POST /v1/chat/completions answered 404"
            elif status != 200:
                self.gateway_reason = f"POST /v1/chat/completions answered {status}: {body[:200]!r}"
        return self.gateway

    def skip_gateway(self, what: str) -> None:
        print(f"  SKIPPED {what}: {self.gateway_reason}")


def _ms(value: float) -> str:
    return f"{value:8.2f}"


def _errors(result: Result) -> str:
    return f"  ({result.errors} errors!)" if result.errors else ""


def scenario_overhead(bench: Bench) -> None:
    print(
        f"\n== overhead: the same chat request direct to the stub (answers at once) and through the gateway "
        f"(wrk, {bench.args.duration:g} s each)"
    )
    print(
        "     c |   direct req/s   p50 ms   p99 ms |  gateway req/s   p50 ms   p99 ms |"
        " added p50   added p99 | req/s ratio"
    )
    gateway = bench.has_gateway()
    for c in bench.args.concurrency:
        d = bench.direct(c)
        row = f"  {c:4d} | {d.rps:14.1f} {_ms(d.p50)} {_ms(d.p99)} |"
        if gateway:
            g = bench.through_gateway(c)
            row += (
                f" {g.rps:14.1f} {_ms(g.p50)} {_ms(g.p99)} | {_ms(g.p50 - d.p50)}    {_ms(g.p99 - d.p99)} |"
                f" {g.rps / d.rps:11.3f}{_errors(g)}"
            )
        else:
            row += "   (skipped)"
        print(row + _errors(d), flush=True)
    if not gateway:
        bench.skip_gateway("the gateway's side")


def scenario_litellm(bench: Bench) -> None:
    print(
        f"\n== litellm: the same chat request through the LiteLLM proxy (no database), against the same stub "
        f"(wrk, {bench.args.duration:g} s each)"
    )
    if not LITELLM.exists():
        print("  SKIPPED: LiteLLM is not installed; run `sh bench/litellm_setup.sh` (it needs PyPI).")
        return
    version_code = "import importlib.metadata as m; print(m.version('litellm'))"
    version = subprocess.run(  # noqa: S603
        [str(LITELLM.parent / "python"), "-c", version_code],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(f"  LiteLLM {version}")
    top = max(bench.args.concurrency)
    stream_body = bench.chat_body("stub-model", stream=True)
    best: tuple[int, dict[int, Result]] | None = None
    for workers in bench.args.litellm_workers:
        proxy, base = bench.stack.start_litellm(workers)
        url = f"{base}/v1/chat/completions"
        auth = f"Bearer {bench.stack.litellm_key}"
        print(f"  {workers} worker(s):")
        print(
            "     c |   direct req/s   p50 ms   p99 ms |  litellm req/s   p50 ms   p99 ms |"
            " added p50   added p99 | req/s ratio"
        )
        results = {}
        for c in bench.args.concurrency:
            d = bench.direct(c)
            r = results[c] = bench.proxied(f"litellm-{workers}", url, bench.chat_body("stub-model"), c, auth)
            print(
                f"  {c:4d} | {d.rps:14.1f} {_ms(d.p50)} {_ms(d.p99)} | {r.rps:14.1f} {_ms(r.p50)} {_ms(r.p99)} |"
                f" {_ms(r.p50 - d.p50)}    {_ms(r.p99 - d.p99)} | {r.rps / d.rps:11.3f}{_errors(r)}",
                flush=True,
            )
        stream = loadgen.closed_loop(
            url, json.dumps(stream_body).encode(), concurrency=1, seconds=bench.args.duration, auth=auth
        )
        if stream.first_event:
            bench.figures[f"litellm_{workers}_ttft_p50"] = stream.first_event["p50"]
            print(
                f"     streamed, c=1: first event p50 {stream.first_event['p50']:.2f} ms, "
                f"p99 {stream.first_event['p99']:.2f} ms{_errors(stream)}"
            )
        proxy.close()
        if best is None or results[top].rps > best[1][top].rps:
            best = (workers, results)
    assert best is not None
    workers, results = best
    low = min(bench.args.concurrency)
    bench.figures["litellm_best"] = {
        "workers": workers,
        "rps_top": results[top].rps,
        "overhead_p50_low": results[low].p50 - bench.direct(low).p50,
    }
    print(
        f"  best: {workers} worker(s), {results[top].rps:.1f} req/s at c={top}, "
        f"p50 overhead at c={low} {results[low].p50 - bench.direct(low).p50:.2f} ms"
    )
    if bench.has_gateway():
        g_low, g_top = bench.through_gateway(low), bench.through_gateway(top)
        ours = g_low.p50 - bench.direct(low).p50
        theirs = bench.figures["litellm_best"]["overhead_p50_low"]
        print(
            f"  gateway / LiteLLM: p50 overhead at c={low} {ours:.2f} / {theirs:.2f} ms = {ours / theirs:.2f}; "
            f"req/s at c={top} {g_top.rps:.1f} / {results[top].rps:.1f} = {g_top.rps / results[top].rps:.2f}"
        )
    else:
        bench.skip_gateway("gateway / LiteLLM")


def scenario_upstream200(bench: Bench) -> None:
    c = bench.args.upstream_concurrency
    seconds = max(bench.args.duration, 5)
    print(f"\n== upstream200: the stub answers after {UPSTREAM_SLOW_MS} ms; c={c} (wrk, {seconds:g} s each)")
    url = f"http://127.0.0.1:{bench.stack.stub200_port}/v1/chat/completions"
    d = bench.wrk("direct200", url, bench.chat_body("stub-model"), c, seconds=seconds)
    print(f"  direct : {d.rps:8.1f} req/s, p50 {d.p50:.1f} ms, p99 {d.p99:.1f} ms{_errors(d)}")
    if not bench.has_gateway():
        bench.skip_gateway("the gateway's side")
        return
    g = bench.wrk(
        "gateway200",
        f"{bench.stack.web_url}/v1/chat/completions",
        bench.chat_body("stub200/stub-model"),
        c,
        auth=bench.stack.auth,
        seconds=seconds,
    )
    bench.figures["upstream200_ratio"] = g.rps / d.rps
    print(f"  gateway: {g.rps:8.1f} req/s, p50 {g.p50:.1f} ms, p99 {g.p99:.1f} ms{_errors(g)}")
    print(f"  gateway / direct req/s: {g.rps / d.rps:.3f}")


def scenario_stream(bench: Bench) -> None:
    print(
        f"\n== stream: `stream: true`, time to the first `data:` event (asyncio client, {bench.args.duration:g} s "
        f"each; the stub sends its first chunk at once, then one every 10 ms)"
    )
    print("     c | direct first-event p50   p99 ms | gateway first-event p50   p99 ms | added p50  added p99")
    gateway = bench.has_gateway()
    for c in bench.args.stream_concurrency:
        d = loadgen.closed_loop(
            f"http://127.0.0.1:{bench.stack.stub_port}/v1/chat/completions",
            json.dumps(bench.chat_body("stub-model", stream=True)).encode(),
            concurrency=c,
            seconds=bench.args.duration,
        )
        assert d.first_event, "the stub sent no event"
        row = f"  {c:4d} | {d.first_event['p50']:22.2f} {d.first_event['p99']:8.2f} |"
        if gateway:
            g = loadgen.closed_loop(
                f"{bench.stack.web_url}/v1/chat/completions",
                json.dumps(bench.chat_body("stub/stub-model", stream=True)).encode(),
                concurrency=c,
                seconds=bench.args.duration,
                auth=bench.stack.auth,
            )
            if not g.first_event:
                row += f" no event came through ({g.statuses}, {g.errors} errors)"
            else:
                added = g.first_event["p50"] - d.first_event["p50"]
                bench.figures.setdefault("ttft_added_p50", added)  # the first (lowest) concurrency
                row += (
                    f" {g.first_event['p50']:23.2f} {g.first_event['p99']:8.2f} | {_ms(added)}   "
                    f"{_ms(g.first_event['p99'] - d.first_event['p99'])}{_errors(g)}"
                )
        else:
            row += "   (skipped)"
        print(row, flush=True)
    if not gateway:
        bench.skip_gateway("the gateway's side")


def _drain(bench: Bench, timeout: float) -> None:
    """Waits until no run is queued or running (what an earlier scenario left)."""
    wait_until(
        lambda: bench.stack.sql("SELECT count(*) FROM runs_run WHERE status IN ('queued', 'running')")[0][0] == 0,
        timeout=timeout,
        what="runs drained",
        interval=0.5,
    )


def scenario_runwait(bench: Bench) -> None:
    print(
        f"\n== runwait: POST /api/v1/runs?wait=30 at c=1, the worker calling the instant stub "
        f"(asyncio client, {bench.args.duration:g} s)"
    )
    bench.stack.start_worker()
    url = f"{bench.stack.web_url}/api/v1/runs?wait=30"
    body = json.dumps({"prompt": "bench", "variables": {}}).encode()
    loadgen.closed_loop(url, body, concurrency=1, seconds=bench.args.warmup, auth=bench.stack.auth)
    r = loadgen.closed_loop(url, body, concurrency=1, seconds=bench.args.duration, auth=bench.stack.auth)
    bench.figures["runwait_p50"] = r.p50
    d = bench.direct(1)
    print(
        f"  runs?wait=30: {r.rps:7.1f} req/s, p50 {r.p50:.2f} ms, p99 {r.p99:.2f} ms, statuses {r.statuses}{_errors(r)}"
    )
    print(f"  direct      : {d.rps:7.1f} req/s, p50 {d.p50:.2f} ms   -> runs?wait=30 adds {r.p50 - d.p50:.2f} ms p50")
    if bench.has_gateway():
        g = bench.through_gateway(1)
        print(
            f"  gateway     : {g.rps:7.1f} req/s, p50 {g.p50:.2f} ms  -> runs?wait=30 - gateway = "
            f"{r.p50 - g.p50:+.2f} ms p50"
        )
    else:
        bench.skip_gateway("runs?wait=30 against the gateway")
    _drain(bench, 60)


def scenario_enqueue(bench: Bench) -> None:
    runs, c, threads = bench.args.runs, bench.args.enqueue_concurrency, bench.args.worker_threads
    print(
        f"\n== enqueue: {runs} x POST /api/v1/runs (202) at c={c}, prompt on the {UPSTREAM_SLOW_MS} ms stub, "
        f"drained by 1 worker process x {threads} threads"
    )
    bench.stack.start_worker()
    _drain(bench, 120)
    started_at = bench.stack.sql("SELECT now()")[0][0]
    body = json.dumps({"prompt": "bench200", "variables": {}}).encode()
    r = loadgen.closed_loop(
        f"{bench.stack.web_url}/api/v1/runs", body, concurrency=c, count=runs, auth=bench.stack.auth
    )
    accepted = r.statuses.get(202, 0) + r.statuses.get(200, 0)
    bench.figures["enqueue_rps"] = accepted / r.seconds
    print(
        f"  enqueue: {accepted / r.seconds:8.1f} runs/s accepted ({accepted} in {r.seconds:.1f} s), p50 {r.p50:.1f} ms,"
        f" p99 {r.p99:.1f} ms, statuses {r.statuses}{_errors(r)}",
        flush=True,
    )
    # What the worker did while the runs were being posted: when posting is slower than the worker's bound
    # (threads / 0.2 s), the total is the posting's time, and the tail after the last POST says so.
    ((posted_at, created, finished_by_then),) = bench.stack.sql(
        "SELECT now(), count(*), count(finished_at) FROM runs_run WHERE created_at >= %s", started_at
    )
    bound = created * UPSTREAM_SLOW_MS / 1000 / threads

    def finished() -> bool:
        return (
            bench.stack.sql(
                "SELECT count(*) FROM runs_run WHERE created_at >= %s AND finished_at IS NOT NULL", started_at
            )[0][0]
            >= created
        )

    wait_until(finished, timeout=bound * 4 + 120, what=f"{created} runs finished", interval=0.5)
    ((last,),) = bench.stack.sql("SELECT max(finished_at) FROM runs_run WHERE created_at >= %s", started_at)
    total = (last - started_at).total_seconds()
    statuses = dict(
        bench.stack.sql("SELECT status, count(*) FROM runs_run WHERE created_at >= %s GROUP BY status", started_at)
    )
    costs = bench.stack.sql(
        "SELECT count(*) FROM billing_costlog c JOIN runs_run r ON c.run_id = r.id WHERE r.created_at >= %s", started_at
    )[0][0]
    bench.figures["drain_ratio"] = total / bound
    print(
        f"  drain  : {created} runs finished {total:.1f} s after the first POST ({statuses}; {costs} cost entries); "
        f"bound {created} x {UPSTREAM_SLOW_MS / 1000:g} s / {threads} threads = {bound:.1f} s; "
        f"ratio {total / bound:.3f}"
    )
    print(
        f"           {finished_by_then} finished while posting ({finished_by_then / r.seconds:.1f}/s), the rest in the "
        f"{(last - posted_at).total_seconds():.1f} s after the last POST; the worker's bound is "
        f"{threads / (UPSTREAM_SLOW_MS / 1000):.0f} runs/s"
    )


def _processes(root: int) -> list[int]:
    """`root` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _memory(pid: int) -> tuple[float, float, str]:
    """(peak RSS, RSS) in bytes and the command line of `pid`."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    kib = lambda name: float(fields.get(name, "0 kB").split()[0]) * 1024  # noqa: E731
    return kib("VmHWM"), kib("VmRSS"), cmdline


def scenario_rss(bench: Bench) -> None:
    seconds = bench.args.duration
    print(f"\n== rss: peak RSS (VmHWM, since each process started) after {seconds:g} s of load of its own")
    bench.stack.start_worker()
    if bench.has_gateway():
        bench.wrk(
            "rss-gateway",
            f"{bench.stack.web_url}/v1/chat/completions",
            bench.chat_body("stub/stub-model"),
            32,
            auth=bench.stack.auth,
            seconds=seconds,
        )
    body = json.dumps({"prompt": "bench", "variables": {}}).encode()
    r = loadgen.closed_loop(
        f"{bench.stack.web_url}/api/v1/runs", body, concurrency=32, seconds=seconds, auth=bench.stack.auth
    )
    print(f"  load: {r.requests} POST /api/v1/runs{' and the gateway at c=32' if bench.gateway else ''}")
    _drain(bench, 120)
    web_peak = worker_peak = 0.0
    for role, process in (("web", bench.stack.web), ("worker", bench.stack.worker)):
        assert process is not None
        for pid in _processes(process.pid):
            try:
                peak, rss, cmdline = _memory(pid)
            except OSError:
                continue
            is_master = pid == process.pid
            label = f"{role} {'master' if is_master else 'child '} {pid}"
            print(f"  {label:22} peak {peak / 2**20:7.1f} MiB, now {rss / 2**20:7.1f} MiB  {cmdline[:90]}")
            if role == "web" and not is_master:
                web_peak = max(web_peak, peak)
            if role == "worker":
                worker_peak = max(worker_peak, peak)
    bench.figures["web_rss_peak"] = web_peak
    bench.figures["worker_rss_peak"] = worker_peak


SCENARIOS: dict[str, Callable[[Bench], None]] = {
    "overhead": scenario_overhead,
    "litellm": scenario_litellm,
    "upstream200": scenario_upstream200,
    "stream": scenario_stream,
    "runwait": scenario_runwait,
    "enqueue": scenario_enqueue,
    "rss": scenario_rss,
}


# --- targets -------------------------------------------------------------------------------------------


def targets(bench: Bench) -> None:
    f, low, top = bench.figures, min(bench.args.concurrency), max(bench.args.concurrency)
    gateway = bool(bench.gateway)
    lines: list[tuple[str, str, str]] = []

    def target(name: str, needs: list[str], check: Callable[[], tuple[bool, str]], *, needs_gateway: bool) -> None:
        missing = [n for n in needs if n not in f]
        if needs_gateway and not gateway:
            lines.append(("SKIP", name, bench.gateway_reason or "the gateway was not measured"))
        elif missing:
            lines.append(("SKIP", name, f"not measured in this run ({', '.join(missing)})"))
        else:
            ok, detail = check()
            lines.append(("PASS" if ok else "MISS", name, detail))

    def gateway_p50_overhead() -> float:
        return bench.through_gateway(low).p50 - bench.direct(low).p50

    def overhead() -> tuple[bool, str]:
        ours, theirs = gateway_p50_overhead(), f["litellm_best"]["overhead_p50_low"]
        return ours <= theirs / 2, f"{ours:.2f} ms vs LiteLLM's {theirs:.2f} ms at c={low} (ratio {ours / theirs:.2f})"

    def throughput() -> tuple[bool, str]:
        ours, theirs = bench.through_gateway(top).rps, f["litellm_best"]["rps_top"]
        return ours >= 1.5 * theirs, f"{ours:.1f} vs {theirs:.1f} req/s at c={top} ({ours / theirs:.2f}x)"

    def runwait() -> tuple[bool, str]:
        g = bench.through_gateway(1).p50
        return f["runwait_p50"] - g <= 5, f"{f['runwait_p50']:.2f} ms vs the gateway's {g:.2f} ms at c=1"

    target("gateway p50 overhead <= 1/2 LiteLLM's", ["litellm_best"], overhead, needs_gateway=True)
    target("gateway req/s at top c >= 1.5x LiteLLM's best", ["litellm_best"], throughput, needs_gateway=True)
    target(
        "200 ms upstream, c=32: gateway >= 0.9x direct",
        ["upstream200_ratio"],
        lambda: (f["upstream200_ratio"] >= 0.9, f"{f['upstream200_ratio']:.3f}x"),
        needs_gateway=True,
    )
    target(
        "first-token overhead < 5 ms p50",
        ["ttft_added_p50"],
        lambda: (f["ttft_added_p50"] < 5, f"{f['ttft_added_p50']:.2f} ms"),
        needs_gateway=True,
    )
    target("runs?wait=30 p50 within 5 ms of the gateway's (c=1)", ["runwait_p50"], runwait, needs_gateway=True)
    target(
        "enqueue >= 2x LiteLLM's chat req/s",
        ["enqueue_rps", "litellm_best"],
        lambda: (
            f["enqueue_rps"] >= 2 * f["litellm_best"]["rps_top"],
            f"{f['enqueue_rps']:.1f} vs {f['litellm_best']['rps_top']:.1f} req/s "
            f"({f['enqueue_rps'] / f['litellm_best']['rps_top']:.2f}x)",
        ),
        needs_gateway=False,
    )
    target(
        "drain within 1.15x of the bound",
        ["drain_ratio"],
        lambda: (f["drain_ratio"] <= 1.15, f"{f['drain_ratio']:.3f}x"),
        needs_gateway=False,
    )
    target(
        "web process peak RSS < 150 MB",
        ["web_rss_peak"],
        lambda: (
            f["web_rss_peak"] < 150 * MB,
            f"{f['web_rss_peak'] / MB:.1f} MB (worker: {f['worker_rss_peak'] / MB:.1f} MB)",
        ),
        needs_gateway=False,
    )
    print("\n== targets")
    for verdict, name, detail in lines:
        print(f"  {verdict}  {name}: {detail}")


# --- main ----------------------------------------------------------------------------------------------


def _ints(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v.strip()]


def machine() -> str:
    memory = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    gib = int(memory.split()[1]) / 2**20
    return (
        f"{os.cpu_count()} CPUs (nproc), {gib:.1f} GiB memory, load average {os.getloadavg()[0]:.2f}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default=",".join(ALL_SCENARIOS), help="Comma-separated; default: all.")
    parser.add_argument("--duration", type=float, default=10.0, help="Seconds per measurement.")
    parser.add_argument("--warmup", type=float, default=1.0, help="Seconds of warm-up before each measurement.")
    parser.add_argument("--concurrency", type=_ints, default=[1, 8, 32], help="Of overhead and litellm.")
    parser.add_argument("--stream-concurrency", type=_ints, default=[1, 8])
    parser.add_argument("--upstream-concurrency", type=int, default=32)
    parser.add_argument("--litellm-workers", type=_ints, default=[1, 2])
    parser.add_argument("--runs", type=int, default=10_000, help="Runs of the enqueue scenario.")
    parser.add_argument("--enqueue-concurrency", type=int, default=32)
    parser.add_argument("--web-worker-class", default="gthread")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=16)
    parser.add_argument(
        "--web-reuse-port",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="gunicorn --reuse-port: each worker its own listening socket, connections spread by the kernel "
        "(default: one socket shared by the workers, as the Dockerfile runs it)",
    )
    parser.add_argument("--worker-threads", type=int, default=16)
    parser.add_argument("--redis-db", type=int, default=14, help="Flushed before and after.")
    parser.add_argument("--keep-logs", action="store_true", help="Keep the processes' logs (the folder is printed).")
    args = parser.parse_args()
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(chosen) - set(ALL_SCENARIOS)
    if unknown:
        sys.exit(f"Unknown scenarios {sorted(unknown)}; choose from {','.join(ALL_SCENARIOS)}.")
    if not loadgen.wrk_available():
        sys.exit("wrk is not installed: `apt-get install -y wrk` (Debian's package).")

    work = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    print(machine())
    print(
        f"gunicorn {args.web_worker_class} {args.web_workers} workers x {args.web_threads} threads"
        f"{', --reuse-port' if args.web_reuse_port else ''}; "
        f"rundramatiq 1 process x {args.worker_threads} threads; PostgreSQL, Redis db {args.redis_db}; "
        f"logs in {work}",
        flush=True,
    )
    stack = Stack(args, work)
    bench = Bench(stack, args)
    try:
        stack.start()
        gateway = bench.has_gateway()
        print(f"gateway: {'answers' if gateway else bench.gateway_reason}", flush=True)
        for name in ALL_SCENARIOS:  # in this order whatever the flag's: rss last, after the load of the others
            if name in chosen:
                SCENARIOS[name](bench)
        targets(bench)
    except Exception:
        for process in stack.processes:
            if not process.alive():
                print(f"--- {process.name} exited; its log ends:\n{process.log()}")
        raise
    finally:
        stack.close()
        print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
        if args.keep_logs:
            print(f"logs kept in {work}")
        else:
            for log in work.iterdir():
                log.unlink()
            work.rmdir()


if __name__ == "__main__":
    main()
