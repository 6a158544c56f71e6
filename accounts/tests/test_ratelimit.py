"""Request rate limits (accounts.middleware.RateLimitMiddleware) through the API, and across processes.

Counters live in the shared cache and outlive a test, so every test counts against buckets of its own:
fresh API keys, and client IPs drawn at random.
"""

import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib import admin
from django.core import checks
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management import call_command
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django_ratelimit import checks as ratelimit_checks
from django_ratelimit import core as ratelimit_core
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from accounts import ratelimit
from accounts import services as account_services
from accounts.models import APIKey
from accounts.tests.factories import UserFactory
from llmops.tests.helpers import assert_error

ROOT = Path(__file__).resolve().parents[2]
KEYS_URL = "/api/v1/keys"


class FrozenClock:
    """Stands in for the `time` module inside django_ratelimit.core: windows move only when told."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    frozen = FrozenClock(float(int(time.time())))
    monkeypatch.setattr(ratelimit_core, "time", frozen)
    return frozen


@pytest.fixture
def limits(settings):
    settings.RATE_LIMIT_ENABLED = True
    settings.RATE_LIMIT_REQUESTS = "5/m"
    settings.RATE_LIMIT_RUNS = "2/m"
    settings.RATE_LIMIT_ANON = "3/m"
    settings.RATE_LIMIT_TRUSTED_PROXIES = []
    return settings


def _random_ip() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def _window_end(bucket: str, period: int = 60) -> int:
    """The last whole second of the bucket's current window, as django-ratelimit computes it."""
    return ratelimit_core._get_window(bucket, period)


def _start_of_window(clock: FrozenClock, bucket: str) -> int:
    """Moves the clock half a second into a fresh window of `bucket`; returns the window's last second."""
    end = _window_end(bucket) + 60  # the next window, never used before
    clock.now = end - 59 + 0.5
    return end


def _key_client(api_key_and_plaintext) -> APIClient:
    _, plaintext = api_key_and_plaintext
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


@pytest.fixture
def alice_key(alice):
    return account_services.api_key_create(project=alice.personal_project, created_by=alice, name="limited")


def test_key_admits_exactly_the_limit_then_429_with_retry_after(limits, clock, alice_key):
    client = _key_client(alice_key)
    end = _start_of_window(clock, ratelimit.key_bucket(alice_key[0]))

    responses = [client.get(KEYS_URL) for _ in range(6)]

    assert [r.status_code for r in responses[:5]] == [200] * 5
    assert [r["X-RateLimit-Limit"] for r in responses[:5]] == ["5"] * 5
    assert [r["X-RateLimit-Remaining"] for r in responses[:5]] == ["4", "3", "2", "1", "0"]
    assert {r["X-RateLimit-Reset"] for r in responses[:5]} == {"60"}
    error = assert_error(responses[5], 429, "rate_limited")
    assert error["message"] == "Rate limit exceeded: 5 requests per minute for this API key."
    assert responses[5]["Retry-After"] == "60"  # half a second into the window: 59.5 s left, rounded up
    assert (responses[5]["X-RateLimit-Limit"], responses[5]["X-RateLimit-Remaining"]) == ("5", "0")
    assert responses[5]["X-RateLimit-Reset"] == "60"

    clock.now = end + 0.75  # the window's last second
    last = client.get(KEYS_URL)
    assert last.status_code == 429
    assert last["Retry-After"] == "1"

    clock.now = end + 1  # the next window
    again = client.get(KEYS_URL)
    assert again.status_code == 200
    assert again["X-RateLimit-Remaining"] == "4"


def test_run_creation_has_its_own_limit(limits, clock, alice_key):
    client = _key_client(alice_key)
    _start_of_window(clock, ratelimit.key_bucket(alice_key[0]))

    created = [client.post("/api/v1/runs", {}, format="json"), client.post("/api/v1/run", {}, format="json")]
    refused = [client.post("/api/v1/runs", {}, format="json"), client.post("/api/v1/run", {}, format="json")]
    listed = client.get("/api/v1/runs")

    # Invalid bodies (400) count as well: the count is taken before the view runs.
    assert [r.status_code for r in created] == [400, 400]
    assert [r["X-RateLimit-Limit"] for r in created] == ["2", "2"]
    for response in refused:
        error = assert_error(response, 429, "rate_limited")
        assert error["message"] == "Rate limit exceeded: 2 run creations per minute for this API key."
        assert response["X-RateLimit-Limit"] == "2"
    # Everything else is counted apart: the run creations used none of it.
    assert listed.status_code == 200
    assert (listed["X-RateLimit-Limit"], listed["X-RateLimit-Remaining"]) == ("5", "4")


def test_unauthenticated_requests_count_per_ip_including_401s(limits, clock, alice_key):
    ip, other_ip = _random_ip(), _random_ip()
    _start_of_window(clock, f"ip:{ip}")
    client = APIClient()

    refused = [
        client.get(KEYS_URL, REMOTE_ADDR=ip),
        client.get(KEYS_URL, REMOTE_ADDR=ip, HTTP_AUTHORIZATION="Bearer not-a-key"),
        client.get(KEYS_URL, REMOTE_ADDR=ip, HTTP_X_API_KEY="llm_nope.nope"),
    ]
    limited = client.get(KEYS_URL, REMOTE_ADDR=ip, HTTP_AUTHORIZATION="Bearer still-not-a-key")

    assert [r.status_code for r in refused] == [401, 401, 401]
    assert [r["X-RateLimit-Remaining"] for r in refused] == ["2", "1", "0"]
    error = assert_error(limited, 429, "rate_limited")
    assert error["message"] == "Rate limit exceeded: 3 requests per minute from this IP address without an API key."
    assert 1 <= int(limited["Retry-After"]) <= 60
    # Another address has its own count; a valid key from the limited address counts against the key.
    assert client.get(KEYS_URL, REMOTE_ADDR=other_ip).status_code == 401
    _, plaintext = alice_key
    with_key = client.get(KEYS_URL, REMOTE_ADDR=ip, HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert with_key.status_code == 200
    assert with_key["X-RateLimit-Limit"] == "5"


def test_failed_requests_count(limits, clock, alice_key):
    limits.RATE_LIMIT_REQUESTS = "3/m"
    client = _key_client(alice_key)
    _start_of_window(clock, ratelimit.key_bucket(alice_key[0]))

    bad_json = client.post("/api/v1/prompts", data="{not json", content_type="application/json")
    no_route = client.get("/api/v1/no-such-thing")
    no_run = client.get("/api/v1/runs/00000000-0000-0000-0000-000000000000")
    limited = client.get(KEYS_URL)

    assert_error(bad_json, 400, "parse_error")
    assert_error(no_route, 404, "not_found")
    assert_error(no_run, 404, "not_found")
    assert_error(limited, 429, "rate_limited")


def test_key_overrides_replace_the_defaults(limits, clock, alice_key):
    api_key, _ = alice_key
    APIKey.objects.filter(pk=api_key.pk).update(rate_limit="2/m", run_rate_limit="1/h")
    client = _key_client(alice_key)
    _start_of_window(clock, ratelimit.key_bucket(api_key))

    reads = [client.get(KEYS_URL).status_code for _ in range(3)]
    runs = [client.post("/api/v1/runs", {}, format="json") for _ in range(2)]

    assert reads == [200, 200, 429]
    assert [r.status_code for r in runs] == [400, 429]
    assert runs[1].json()["error"]["message"] == "Rate limit exceeded: 1 run creations per hour for this API key."
    assert 1 <= int(runs[1]["Retry-After"]) <= 3600


def test_a_malformed_override_in_the_database_falls_back_to_the_default(limits, clock, alice_key, caplog):
    api_key, _ = alice_key
    APIKey.objects.filter(pk=api_key.pk).update(rate_limit="lots")  # written around clean()
    client = _key_client(alice_key)

    response = client.get(KEYS_URL)

    assert response.status_code == 200
    assert response["X-RateLimit-Limit"] == "5"
    assert "malformed rate_limit" in caplog.text


def test_disabled_limits_count_nothing(limits, alice_key):
    limits.RATE_LIMIT_ENABLED = False
    limits.RATE_LIMIT_REQUESTS = "1/m"
    client = _key_client(alice_key)

    responses = [client.get(KEYS_URL) for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert not any(r.has_header("X-RateLimit-Limit") for r in responses)


def test_health_schema_and_docs_are_not_limited(limits, db):
    limits.RATE_LIMIT_ANON = "1/m"
    ip = _random_ip()
    client = APIClient()

    health = [client.get("/api/v1/health", REMOTE_ADDR=ip) for _ in range(3)]
    schema = [client.get("/api/schema/", REMOTE_ADDR=ip) for _ in range(2)]

    assert all(r.status_code in (200, 503) and not r.has_header("X-RateLimit-Limit") for r in health)
    assert [r.status_code for r in schema] == [200, 200]
    assert client.get(KEYS_URL, REMOTE_ADDR=ip)["X-RateLimit-Remaining"] == "0"  # the first counted request


def test_the_key_is_looked_up_once_per_request(limits, alice_key):
    client = _key_client(alice_key)

    with CaptureQueriesContext(connection) as queries:
        response = client.get(KEYS_URL)

    assert response.status_code == 200
    lookups = [q["sql"] for q in queries.captured_queries if '"accounts_apikey"."prefix" =' in q["sql"]]
    assert len(lookups) == 1, lookups


def test_forwarded_for_is_believed_only_from_trusted_proxies(limits):
    limits.RATE_LIMIT_TRUSTED_PROXIES = ["192.0.2.0/24"]
    factory = RequestFactory()

    def ip_of(peer: str, forwarded: str | None = None) -> str:
        extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
        return ratelimit.client_ip(factory.get("/api/v1/keys", REMOTE_ADDR=peer, **extra))

    assert ip_of("198.51.100.7", "203.0.113.9") == "198.51.100.7"  # untrusted peer: its header is ignored
    assert ip_of("192.0.2.1", "203.0.113.9") == "203.0.113.9"
    # The rightmost hop a trusted proxy did not write is the client; the left part is the client's own say.
    assert ip_of("192.0.2.1", "1.1.1.1, 203.0.113.9, 192.0.2.5") == "203.0.113.9"
    assert ip_of("192.0.2.1", "garbage") == "192.0.2.1"
    assert ip_of("192.0.2.1") == "192.0.2.1"
    assert ip_of("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::"  # IPv6 per /64


def test_counting_is_atomic_under_concurrency(limits, clock):
    """Threads racing on one bucket: exactly `limit` are admitted (LocMemCache or Redis alike)."""
    limit = ratelimit.Limit(ratelimit.GROUP_REQUESTS, "50/h", f"key:race-{random.random()}", "requests per {period}")
    request = RequestFactory().get(KEYS_URL)
    admitted: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait(timeout=10)
        for _ in range(10):
            usage = ratelimit.count(request, limit)
            with lock:
                admitted.append(usage is not None and not usage.exceeded)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(admitted) == 80
    assert sum(admitted) == 50


def test_malformed_default_rate_fails_at_start_up(limits):
    limits.RATE_LIMIT_REQUESTS = "600 per minute"

    with pytest.raises(ImproperlyConfigured, match="RATE_LIMIT_REQUESTS"):
        ratelimit.check_settings()


@pytest.mark.parametrize("value", ["600/m", "1/s", "10/h", "1000/d", ""])
def test_clean_accepts_rates_and_empty(alice, value):
    APIKey(
        project=alice.personal_project,
        created_by=alice,
        name="k",
        prefix="p",
        secret_hash="h",
        rate_limit=value,
        run_rate_limit=value,
    ).full_clean()


@pytest.mark.parametrize("value", ["600", "600/min", "0/m", "-1/m", "10/5m", " 6/m", "m/600"])
def test_clean_refuses_malformed_rates(alice, value):
    api_key = APIKey(
        project=alice.personal_project,
        created_by=alice,
        name="k",
        prefix="p",
        secret_hash="h",
        rate_limit=value,
        run_rate_limit=value,
    )

    with pytest.raises(ValidationError) as excinfo:
        api_key.full_clean()

    assert set(excinfo.value.message_dict) == {"rate_limit", "run_rate_limit"}


def _change_form_data(form) -> dict:
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name, field.initial)
        value = value() if callable(value) else value
        if value is not None:
            data[name] = value
    return data


def test_admin_edits_and_validates_the_overrides(admin_client, alice_key, rf, admin_user):
    api_key, _ = alice_key
    url = f"/admin/accounts/apikey/{api_key.pk}/change/"
    request = rf.get(url)
    request.user = admin_user
    form = admin.site._registry[APIKey].get_form(request, api_key, change=True)(instance=api_key)
    data = _change_form_data(form)

    refused = admin_client.post(url, {**data, "rate_limit": "fast", "run_rate_limit": "5/m"})
    saved = admin_client.post(url, {**data, "rate_limit": "100/m", "run_rate_limit": "5/m"})

    assert refused.status_code == 200
    assert "rate_limit" in refused.context["adminform"].form.errors
    assert saved.status_code == 302, saved.context["adminform"].form.errors if saved.context else saved
    api_key.refresh_from_db()
    assert (api_key.rate_limit, api_key.run_rate_limit) == ("100/m", "5/m")


def test_system_checks(settings):
    """django-ratelimit refuses local memory (each process would count alone): silenced on the embedded
    default only, where there is one process; with REDIS_URL its checks pass as they are."""
    issues = ratelimit_checks.check_caches(None)
    if settings.REDIS_URL:
        assert issues == []
        assert not [i for i in getattr(settings, "SILENCED_SYSTEM_CHECKS", []) if i.startswith("django_ratelimit")]
    else:
        assert {issue.id for issue in issues} == {"django_ratelimit.E003", "django_ratelimit.W001"}
        assert set(settings.SILENCED_SYSTEM_CHECKS) == {"django_ratelimit.E003", "django_ratelimit.W001"}
    # As manage.py runs them (and gunicorn's start-up does not): no error or warning left.
    call_command("check", "--tag", checks.Tags.caches, "--fail-level", "WARNING", stdout=StringIO())


def test_schema_documents_429_and_the_rate_limit_headers():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    keys_list = schema["paths"]["/api/v1/keys"]["get"]["responses"]
    run_create = schema["paths"]["/api/v1/runs"]["post"]["responses"]
    health = schema["paths"]["/api/v1/health"]["get"]["responses"]
    rate_headers = {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}

    assert set(keys_list["429"]["headers"]) == rate_headers | {"Retry-After"}
    assert set(run_create["429"]["headers"]) == rate_headers | {"Retry-After"}
    assert set(keys_list["200"]["headers"]) == rate_headers
    assert "headers" not in health["200"]


# Two real web processes sharing PostgreSQL and Redis.

requires_postgres_and_redis = pytest.mark.skipif(
    connection.vendor != "postgresql" or not settings.REDIS_URL,
    reason="separate web processes need a shared database (PostgreSQL) and a shared cache (REDIS_URL)",
)


GUNICORN_OPTIONS = ["--workers", "1", "--threads", "2"]


def _database_url() -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (a local http URL)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


@pytest.fixture
def two_servers(transactional_db, tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": "ratelimit-test-only",
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_REQUESTS": "20/m",
        "EMBEDDED_WORKER": "0",
        "DRAMATIQ_PROMETHEUS": "0",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("DEBUG", None)
    servers = []
    for index in range(2):
        port = _free_port()
        log = (tmp_path / f"gunicorn-{index}.log").open("w")
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "gunicorn", "llmops.wsgi:application", "-b", f"127.0.0.1:{port}", *GUNICORN_OPTIONS],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        servers.append((process, f"http://127.0.0.1:{port}", log))
    try:
        for process, base, _ in servers:
            deadline = time.monotonic() + 60
            while _get_or_none(f"{base}/api/v1/health") is None:
                if process.poll() is not None or time.monotonic() > deadline:
                    logs = "\n".join((tmp_path / f"gunicorn-{i}.log").read_text() for i in range(2))
                    pytest.fail(f"gunicorn at {base} did not start:\n{logs}")
                time.sleep(0.2)
        yield [base for _, base, _ in servers]
    finally:
        for process, _, _ in servers:
            process.terminate()
        for process, _, log in servers:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def _get_or_none(url: str) -> int | None:
    try:
        return _get(url)[0]
    except OSError:
        return None


@pytest.mark.postgres
@pytest.mark.slow
@requires_postgres_and_redis
def test_two_processes_admit_exactly_the_limit_together(transactional_db, two_servers):
    owner = UserFactory(username="carol")
    api_key, plaintext = account_services.api_key_create(
        project=owner.personal_project, created_by=owner, name="shared"
    )
    headers = {"Authorization": f"Bearer {plaintext}"}
    # All 30 requests must fall into one of django-ratelimit's fixed windows for this key.
    frees_in = _window_end(ratelimit.key_bucket(api_key)) + 1 - time.time()
    if frees_in < 3:
        time.sleep(frees_in + 0.1)

    results = [(*_get(f"{two_servers[n % 2]}{KEYS_URL}", headers), n % 2) for n in range(30)]

    admitted = [(status, server) for status, _, server in results if status != 429]
    limited = [headers for status, headers, _ in results if status == 429]
    retry_after = sorted({int(h["Retry-After"]) for h in limited})
    print(f"\n2 processes, 20/m: {len(admitted)} of 30 admitted, {len(limited)} 429, Retry-After {retry_after}")
    assert len(admitted) == 20
    assert len(limited) == 10
    assert {status for status, _ in admitted} == {200}
    # Both processes admitted requests, and each counted the other's: neither admitted 20 on its own.
    assert sorted(server for _, server in admitted) == [0] * 10 + [1] * 10
    assert all(1 <= seconds <= 60 for seconds in retry_after), retry_after
    assert {h["X-RateLimit-Remaining"] for h in limited} == {"0"}
