"""Load generation for bench/gateway.py: wrk (with bench/wrk_post.lua) for throughput and latency over a
duration, and a small asyncio HTTP/1.1 client for what wrk cannot do: an exact number of requests
(the enqueue scenario) and the time to the first Server-Sent Event of a streamed answer.

Both are closed loops: each of `concurrency` connections (kept alive) sends its next request when
the previous answer has arrived. The asyncio client reads raw sockets (no httpx: it would be the
bottleneck long before the server is) and sustains a few thousand requests per second on one core.

Used as a module; on its own it measures one URL:

    .venv/bin/python bench/loadgen.py URL BODY_FILE [--auth 'Bearer ...'] [-c 8] [-d 10] [--stream]
"""

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_post.lua"


@dataclass
class Result:
    """One measurement: requests answered, over `seconds`, with latencies in milliseconds."""

    requests: int
    seconds: float
    p50: float
    p90: float
    p95: float
    p99: float
    mean: float
    errors: int = 0  # connection errors, timeouts and answers of status >= 400 (wrk's view)
    statuses: dict[int, int] = field(default_factory=dict)  # the asyncio client's tally
    first_event: dict[str, float] | None = None  # streams: time to first `data:` (p50, p90, p99), ms

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of `values` (not empty), p in 0..100."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk(url: str, body_file: Path, *, concurrency: int, seconds: float, auth: str | None = None) -> Result:
    """`wrk` for `seconds` at `concurrency` connections (one thread: the machine has two cores)."""
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file), "BENCH_AUTH": auth or ""}
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "60s",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout  # noqa: S603
    line = next((ln for ln in output.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no figures:\n{output}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    latency = data["latency_ms"]
    return Result(
        requests=data["requests"],
        seconds=data["seconds"],
        p50=latency["p50"],
        p90=latency["p90"],
        p95=latency["p95"],
        p99=latency["p99"],
        mean=latency["mean"],
        errors=sum(data["errors"].values()),
    )


# --- the asyncio client -------------------------------------------------------------------------------


def request_bytes(url: str, body: bytes, *, auth: str | None = None) -> tuple[str, int, bytes]:
    """(host, port, the whole POST request) for `url`."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = [
        f"POST {target} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if auth:
        head.append(f"Authorization: {auth}")
    return host, port, ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, float | None, bool]:
    """Reads one answer: (status, monotonic time its first `data:` event arrived or None, must close)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    close = headers.get(b"connection") == b"close"
    first_event = None
    if headers.get(b"transfer-encoding") == b"chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # the end of the (empty) trailers
                break
            chunk = await reader.readexactly(size + 2)
            if first_event is None and b"data:" in chunk:
                first_event = time.monotonic()
    elif b"content-length" in headers:
        data = await reader.readexactly(int(headers[b"content-length"]))
        if first_event is None and b"data:" in data:
            first_event = time.monotonic()
    else:  # no length: the body ends with the connection
        await reader.read()
        close = True
    return status, first_event, close


async def _closed_loop(
    host: str, port: int, request: bytes, *, concurrency: int, seconds: float | None, count: int | None
) -> tuple[list[float], list[float], dict[int, int], int, float]:
    latencies: list[float] = []
    first_events: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    started = time.monotonic()
    deadline = started + seconds if seconds is not None else float("inf")
    tickets = iter(range(count)) if count is not None else None

    async def connection() -> None:
        nonlocal errors
        reader = writer = None
        while time.monotonic() < deadline and (tickets is None or next(tickets, None) is not None):
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                sent = time.monotonic()
                writer.write(request)
                status, first_event, close = await _read_response(reader)  # type: ignore[arg-type]
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.01)
                continue
            done = time.monotonic()
            latencies.append((done - sent) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            if first_event is not None:
                first_events.append((first_event - sent) * 1000)
            if close:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return latencies, first_events, statuses, errors, time.monotonic() - started


def closed_loop(
    url: str,
    body: bytes,
    *,
    concurrency: int,
    seconds: float | None = None,
    count: int | None = None,
    auth: str | None = None,
) -> Result:
    """`count` requests in all, or as many as fit in `seconds`, at `concurrency` connections."""
    host, port, request = request_bytes(url, body, auth=auth)
    latencies, first_events, statuses, errors, elapsed = asyncio.run(
        _closed_loop(host, port, request, concurrency=concurrency, seconds=seconds, count=count)
    )
    errors += sum(n for status, n in statuses.items() if status >= 400)
    if not latencies:
        return Result(0, elapsed, 0, 0, 0, 0, 0, errors=errors, statuses=statuses)
    first = None
    if first_events:
        first = {
            "p50": percentile(first_events, 50),
            "p90": percentile(first_events, 90),
            "p99": percentile(first_events, 99),
        }
    return Result(
        requests=len(latencies),
        seconds=elapsed,
        p50=percentile(latencies, 50),
        p90=percentile(latencies, 90),
        p95=percentile(latencies, 95),
        p99=percentile(latencies, 99),
        mean=sum(latencies) / len(latencies),
        errors=errors,
        statuses=statuses,
        first_event=first,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("body_file", type=Path)
    parser.add_argument("--auth", help="The Authorization header, e.g. 'Bearer llmk_...'.")
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("-d", "--duration", type=float, default=10.0)
    parser.add_argument("--asyncio", action="store_true", help="The asyncio client instead of wrk.")
    args = parser.parse_args()
    body = args.body_file.read_bytes()
    if args.asyncio or not wrk_available() or b'"stream": true' in body or b'"stream":true' in body:
        result = closed_loop(args.url, body, concurrency=args.concurrency, seconds=args.duration, auth=args.auth)
    else:
        result = wrk(args.url, args.body_file, concurrency=args.concurrency, seconds=args.duration, auth=args.auth)
    print(
        f"{result.rps:.1f} req/s ({result.requests} in {result.seconds:.1f} s), latency ms p50 {result.p50:.2f} "
        f"p90 {result.p90:.2f} p99 {result.p99:.2f}, errors {result.errors}, statuses {result.statuses or '-'}"
    )
    if result.first_event:
        print(f"first event ms: p50 {result.first_event['p50']:.2f} p99 {result.first_event['p99']:.2f}")


if __name__ == "__main__":
    main()
