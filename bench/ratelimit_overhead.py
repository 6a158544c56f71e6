"""Throughput of API requests with the rate limit middleware on and off.

    .venv/bin/python bench/ratelimit_overhead.py [--requests 2000] [--block 50]

Runs on the settings the environment gives (the embedded default: SQLite, local memory cache, unless
DATABASE_URL / REDIS_URL are set) against a throwaway test database. Two test clients send the same
key-authenticated GET /api/v1/keys: one whose middleware chain lacks accounts.middleware.RateLimitMiddleware
("off") and one with it, limits on and too high to refuse ("on"). They take turns in blocks, so load
from other processes on the machine hits both alike; the median block of each is reported, as wall-clock
throughput and as CPU time per request (the steadier figure on a busy machine).
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
os.environ.setdefault("LOG_LEVEL", "WARNING")  # no log line per request
os.environ.setdefault("EMBEDDED_WORKER", "0")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from accounts import ratelimit, services  # noqa: E402
from accounts.tests.factories import UserFactory  # noqa: E402

MIDDLEWARE_PATH = "accounts.middleware.RateLimitMiddleware"
URL = "/api/v1/keys"


def _client(plaintext: str, *, with_middleware: bool) -> APIClient:
    middleware = [m for m in settings.MIDDLEWARE if with_middleware or m != MIDDLEWARE_PATH]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    with override_settings(MIDDLEWARE=middleware):
        response = client.get(URL)  # builds this client's middleware chain, kept from now on
    assert response.status_code == 200, response.content
    assert response.has_header("X-RateLimit-Limit") is with_middleware
    return client


def _block(client: APIClient, count: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) for `count` requests."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        response = client.get(URL)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert response.status_code == 200, response.content
    return wall, cpu


def _count_alone(count: int) -> float:
    """CPU seconds per ratelimit.count(): the cache work the middleware adds, without the HTTP stack's noise."""
    request = RequestFactory().get(URL)
    limit = ratelimit.Limit(ratelimit.GROUP_REQUESTS, "100000000/m", f"key:bench-{time.time()}", "requests")
    started = time.process_time()
    for _ in range(count):
        ratelimit.count(request, limit)
    return (time.process_time() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per mode")
    parser.add_argument("--block", type=int, default=50)
    args = parser.parse_args()
    blocks = max(1, args.requests // args.block)

    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        with override_settings(RATE_LIMIT_ENABLED=True, RATE_LIMIT_REQUESTS="100000000/m"):
            user = UserFactory(username="bench")
            _, plaintext = services.api_key_create(project=user.personal_project, created_by=user, name="bench")
            clients = {"off": _client(plaintext, with_middleware=False), "on": _client(plaintext, with_middleware=True)}
            timings: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
            for index in range(blocks):
                order = ["off", "on"] if index % 2 == 0 else ["on", "off"]
                for mode in order:
                    timings[mode].append(_block(clients[mode], args.block))
            count_cpu = _count_alone(args.requests)
    finally:
        connection.creation.destroy_test_db(test_db, verbosity=0)

    wall = {mode: statistics.median(w for w, _ in rows) / args.block for mode, rows in timings.items()}
    cpu = {mode: statistics.median(c for _, c in rows) / args.block for mode, rows in timings.items()}
    cache = settings.CACHES[settings.RATELIMIT_USE_CACHE]["BACKEND"]
    print(f"database {connection.vendor}, rate limit cache {cache}")
    print(f"GET {URL}: {blocks} blocks of {args.block} requests per mode, median block")
    for mode in ("off", "on"):
        print(f"middleware {mode + ':':4} {1 / wall[mode]:7.1f} requests/s, {cpu[mode] * 1e6:7.0f} us CPU per request")
    print(
        f"ratio on/off: throughput {wall['off'] / wall['on']:.3f}, CPU per request {cpu['on'] / cpu['off']:.3f} "
        f"({(cpu['on'] - cpu['off']) * 1e6:+.0f} us CPU per request)"
    )
    print(f"counting alone (ratelimit.count): {count_cpu * 1e6:.0f} us CPU per request")


if __name__ == "__main__":
    main()
