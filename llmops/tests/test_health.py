"""GET /api/v1/health: 200 with each dependency's state, 503 when one is down."""

import dramatiq
import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings
from dramatiq.brokers.redis import RedisBroker

HEALTH = "/api/v1/health"
# Port 1 on localhost: nothing listens there, so connecting fails at once.
DEAD_REDIS = "redis://127.0.0.1:1/0"


def _expected_broker_state() -> str:
    return "ok" if settings.REDIS_URL else "ok (in-process)"


def test_healthy(db, anon_client):
    response = anon_client.get(HEALTH)

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "cache": "ok", "broker": _expected_broker_state()},
    }
    assert response["X-Request-ID"]


def test_health_ignores_credentials(db, anon_client):
    """A monitor with a stale key must still see the health, not a 401."""
    response = anon_client.get(HEALTH, HTTP_AUTHORIZATION="Bearer llmk_000000000000.stale")

    assert response.status_code == 200


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_health_is_read_only(db, anon_client, method):
    assert getattr(anon_client, method)(HEALTH).status_code == 405


def test_cache_down_is_503(db, anon_client):
    dead_cache = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": DEAD_REDIS}}

    # override_settings(CACHES=...) makes Django drop its cache connections on entry and exit,
    # so `django.core.cache.cache` points at the dead server only inside this block.
    with override_settings(CACHES=dead_cache):
        response = anon_client.get(HEALTH)

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["cache"].startswith("error: ")
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"] == _expected_broker_state()
    # And back to normal once the override ends.
    cache.set("health-test", "1")
    assert cache.get("health-test") == "1"
    assert anon_client.get(HEALTH).status_code == 200


def test_broker_down_is_503(db, anon_client, monkeypatch):
    dead_broker = RedisBroker(url=DEAD_REDIS)
    monkeypatch.setattr(dramatiq, "get_broker", lambda: dead_broker)

    response = anon_client.get(HEALTH)

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"] == "error: ConnectionError"
    assert body["checks"]["cache"] == "ok"
    assert body["checks"]["database"] == "ok"


def test_database_down_is_503_not_500(db, anon_client, monkeypatch):
    from llmops import health

    def broken_database():
        raise RuntimeError("database is gone")

    monkeypatch.setitem(health.CHECKS, "database", broken_database)

    response = anon_client.get(HEALTH)

    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "error: RuntimeError"
    assert "database is gone" not in response.content.decode()
