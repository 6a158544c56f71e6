"""API key authentication through the public surface: headers, refusals, last_used_at, logs."""

import logging
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import keys, services
from accounts.models import APIKey
from llmops.tests.helpers import assert_error

KEYS_URL = "/api/v1/keys"


@pytest.fixture
def alice_key(alice):
    return services.api_key_create(project=alice.personal_project, created_by=alice, name="mine")


def _names(response) -> set[str]:
    return {row["name"] for row in response.json()["results"]}


def test_bearer_header_authenticates(alice_key):
    _, plaintext = alice_key
    client = APIClient()

    response = client.get(KEYS_URL, HTTP_AUTHORIZATION=f"Bearer {plaintext}")

    assert response.status_code == 200
    assert _names(response) == {"mine"}


def test_bearer_scheme_is_case_insensitive(alice_key):
    _, plaintext = alice_key

    response = APIClient().get(KEYS_URL, HTTP_AUTHORIZATION=f"bearer {plaintext}")

    assert response.status_code == 200


def test_x_api_key_header_authenticates(alice_key):
    _, plaintext = alice_key

    response = APIClient().get(KEYS_URL, HTTP_X_API_KEY=plaintext)

    assert response.status_code == 200
    assert _names(response) == {"mine"}


def test_no_credentials_get_401(db, anon_client):
    response = anon_client.get(KEYS_URL)

    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


def _revoked(user):
    api_key, plaintext = services.api_key_create(project=user.personal_project, created_by=user, name="revoked")
    services.api_key_revoke(api_key=api_key)
    return plaintext


def _expired(user):
    soon = timezone.now() + timedelta(days=1)
    api_key, plaintext = services.api_key_create(
        project=user.personal_project, created_by=user, name="expired", expires_at=soon
    )
    APIKey.objects.filter(pk=api_key.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    return plaintext


def _unknown(user):
    return keys.join(*keys.generate())


def _wrong_secret(user):
    _, plaintext = services.api_key_create(project=user.personal_project, created_by=user, name="real")
    return plaintext.split(".")[0] + ".not-the-secret"


def _malformed(user):
    return "not-a-key-at-all"


@pytest.mark.parametrize("make_key", [_revoked, _expired, _unknown, _wrong_secret, _malformed])
@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_bad_keys_get_401_without_echoing_the_key(alice, make_key, header):
    raw_key = make_key(alice)
    value = f"Bearer {raw_key}" if header == "Authorization" else raw_key

    response = APIClient().get(KEYS_URL, headers={header: value})

    error = assert_error(response, 401, "not_authenticated")
    assert raw_key not in response.content.decode()
    assert raw_key.split(".")[-1] not in response.content.decode()
    assert error["fields"] == {}


def test_empty_bearer_token_gets_401(alice):
    response = APIClient().get(KEYS_URL, HTTP_AUTHORIZATION="Bearer ")

    assert_error(response, 401, "not_authenticated")


def test_disabled_user_gets_401(alice_key, alice):
    _, plaintext = alice_key
    alice.is_active = False
    alice.save()

    response = APIClient().get(KEYS_URL, HTTP_AUTHORIZATION=f"Bearer {plaintext}")

    assert_error(response, 401, "not_authenticated")


def test_last_used_at_is_set_then_not_rewritten_within_the_window(alice_key, settings):
    settings.API_KEY_LAST_USED_RESOLUTION = 60
    api_key, plaintext = alice_key
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=plaintext)

    assert client.get(KEYS_URL).status_code == 200
    first = APIKey.objects.get(pk=api_key.pk).last_used_at
    assert first is not None
    assert timezone.now() - first < timedelta(seconds=10)

    with CaptureQueriesContext(connection) as queries:
        assert client.get(KEYS_URL).status_code == 200
    assert APIKey.objects.get(pk=api_key.pk).last_used_at == first
    assert not [q for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]


def test_last_used_at_is_refreshed_after_the_window(alice_key, settings):
    settings.API_KEY_LAST_USED_RESOLUTION = 60
    api_key, plaintext = alice_key
    stale = timezone.now() - timedelta(seconds=120)
    APIKey.objects.filter(pk=api_key.pk).update(last_used_at=stale)

    assert APIClient().get(KEYS_URL, HTTP_X_API_KEY=plaintext).status_code == 200

    refreshed = APIKey.objects.get(pk=api_key.pk).last_used_at
    assert refreshed is not None
    assert timezone.now() - refreshed < timedelta(seconds=10)


def test_plaintext_key_never_reaches_the_logs(alice, caplog):
    """Creation, use, a bad secret and a revoked key: no log record carries the key or its secret."""
    caplog.set_level(logging.DEBUG)
    _, plaintext = services.api_key_create(project=alice.personal_project, created_by=alice, name="bootstrap")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")

    created = client.post(KEYS_URL, {"name": "fresh"}, format="json")
    fresh_key = created.json()["key"]
    fresh_id = created.json()["id"]
    assert client.get(KEYS_URL).status_code == 200
    assert APIClient().get(KEYS_URL, HTTP_X_API_KEY=fresh_key + "tampered").status_code == 401
    assert client.delete(f"{KEYS_URL}/{fresh_id}").status_code == 204
    assert APIClient().get(KEYS_URL, HTTP_X_API_KEY=fresh_key).status_code == 401

    assert caplog.records, "expected request logs to inspect"
    assert any(r.name == "llmops.request" and getattr(r, "status", None) == 401 for r in caplog.records)
    for key in (plaintext, fresh_key):
        secret = key.split(".")[1]
        assert secret not in caplog.text
        for record in caplog.records:
            assert secret not in str(record.__dict__), record


@pytest.mark.parametrize(
    "authorization",
    ["Token {key}", "token {key}", "{key}", "Api-Key {key}", "Token not-one-of-our-keys"],
    ids=["token-scheme", "token-lowercase", "bare-key", "other-scheme-with-our-key", "token-scheme-other-value"],
)
def test_wrong_authorization_scheme_gets_401_naming_bearer(alice_key, authorization):
    """Not "credentials were not provided": the answer says which scheme works, and never echoes the key."""
    _, plaintext = alice_key
    header = authorization.format(key=plaintext)

    response = APIClient().get(KEYS_URL, HTTP_AUTHORIZATION=header)

    error = assert_error(response, 401, "not_authenticated", fields=set())
    assert "Bearer" in error["message"] and "X-API-Key" in error["message"], error
    assert "not provided" not in error["message"]
    assert plaintext.split(".")[-1] not in response.content.decode()
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_foreign_scheme_is_left_to_its_owner(db, anon_client):
    """A proxy's Basic credentials are not a malformed key: the request is unauthenticated, as before."""
    response = anon_client.get(KEYS_URL, HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")

    error = assert_error(response, 401, "not_authenticated")
    assert error["message"] == "Authentication credentials were not provided."


def test_x_api_key_works_beside_a_foreign_authorization_scheme(alice_key):
    _, plaintext = alice_key

    response = APIClient().get(KEYS_URL, HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz", HTTP_X_API_KEY=plaintext)

    assert response.status_code == 200, response.content
    assert _names(response) == {"mine"}
