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


# --- ?providers=1 ------------------------------------------------------------------------------------


@pytest.fixture
def provider_checks(monkeypatch):
    """Replaces the registered provider checks; returns the list of calls made to them."""
    from llmops import health

    calls: list[str] = []

    def models_listed():
        calls.append("models_listed")
        return {"local": "ok", "openai": "error: connection_error"}

    def broken():
        calls.append("broken")
        raise RuntimeError("the check itself failed")

    monkeypatch.setattr(health, "_provider_checks", [models_listed, broken])
    return calls


def test_plain_check_asks_no_provider(db, anon_client, provider_checks):
    response = anon_client.get(HEALTH)

    assert response.status_code == 200
    assert "providers" not in response.json()
    assert provider_checks == []
    assert anon_client.get(HEALTH, {"providers": "0"}).json().keys() == {"status", "checks"}
    assert provider_checks == []


def test_providers_reports_each_provider_and_keeps_the_status(db, anon_client, provider_checks):
    response = anon_client.get(HEALTH, {"providers": "1"})

    assert response.status_code == 200  # an unreachable provider is not this service being down
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "cache": "ok", "broker": _expected_broker_state()}
    assert body["providers"] == {"local": "ok", "openai": "error: connection_error", "broken": "error: RuntimeError"}
    assert "the check itself failed" not in response.content.decode()
    assert provider_checks == ["models_listed", "broken"]


def test_providers_is_reported_when_a_dependency_is_down_too(db, anon_client, provider_checks, monkeypatch):
    monkeypatch.setattr(dramatiq, "get_broker", lambda: RedisBroker(url=DEAD_REDIS))

    response = anon_client.get(HEALTH, {"providers": "1"})

    assert response.status_code == 503
    assert response.json()["providers"]["local"] == "ok"


@pytest.mark.parametrize("value", ["", "true", "yes", "2", "01"])
def test_providers_takes_only_the_documented_values(db, anon_client, provider_checks, value):
    response = anon_client.get(HEALTH, {"providers": value})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == ["providers"]
    assert error["request_id"] == response["X-Request-ID"]
    assert provider_checks == []


def test_schema_documents_the_providers_parameter():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operation = schema["paths"]["/api/v1/health"]["get"]

    [parameter] = [p for p in operation["parameters"] if p["name"] == "providers"]
    assert parameter["in"] == "query"
    assert parameter.get("required", False) is False
    assert parameter["schema"]["enum"] == ["0", "1"]
    assert "400" in operation["responses"]
    health = schema["components"]["schemas"]["Health"]
    assert "providers" in health["properties"]
    assert "providers" not in health.get("required", [])
