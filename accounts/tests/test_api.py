"""The /api/v1/keys endpoints: shown-once creation, listing, revocation, owner isolation."""

import uuid
from datetime import timedelta

from django.utils import timezone
from rest_framework.test import APIClient

from accounts import keys, services
from accounts.models import APIKey
from llmops.tests.helpers import assert_error

KEYS_URL = "/api/v1/keys"


def test_create_returns_the_plaintext_once(alice_client, alice):
    response = alice_client.post(KEYS_URL, {"name": "deploy"}, format="json")

    assert response.status_code == 201
    body = response.json()
    parts = keys.split(body["key"])
    assert parts is not None
    prefix, secret = parts
    assert body["prefix"] == prefix
    assert body["name"] == "deploy"
    assert body["status"] == "active"
    stored = APIKey.objects.get(pk=body["id"])
    assert (stored.created_by, stored.project) == (alice, alice.personal_project)
    assert stored.secret_hash == keys.hash_secret(secret)
    # The new key works on its own.
    assert APIClient().get(KEYS_URL, HTTP_AUTHORIZATION=f"Bearer {body['key']}").status_code == 200


def test_list_never_contains_a_key_or_secret(alice_client):
    created = alice_client.post(KEYS_URL, {"name": "deploy"}, format="json").json()
    secret = created["key"].split(".")[1]

    response = alice_client.get(KEYS_URL)

    assert response.status_code == 200
    rows = response.json()["results"]
    assert {row["name"] for row in rows} == {"test", "deploy"}
    for row in rows:
        assert "key" not in row
        assert "secret_hash" not in row
    assert secret not in response.content.decode()
    assert alice_client.plaintext_key.split(".")[1] not in response.content.decode()


def test_create_with_an_expiry(alice_client):
    expires_at = timezone.now() + timedelta(days=30)

    response = alice_client.post(KEYS_URL, {"name": "temp", "expires_at": expires_at.isoformat()}, format="json")

    assert response.status_code == 201
    assert APIKey.objects.get(pk=response.json()["id"]).expires_at == expires_at


def test_create_with_an_expiry_in_the_past_is_400(alice_client, alice):
    past = (timezone.now() - timedelta(days=1)).isoformat()

    response = alice_client.post(KEYS_URL, {"name": "old", "expires_at": past}, format="json")

    assert_error(response, 400, fields={"expires_at"})
    assert APIKey.objects.filter(created_by=alice).count() == 1  # only the client's own key


def test_create_without_a_name_is_400(alice_client, alice):
    response = alice_client.post(KEYS_URL, {}, format="json")

    assert_error(response, 400, "validation_error", fields={"name"})
    assert APIKey.objects.filter(created_by=alice).count() == 1


def test_delete_revokes_and_the_key_then_gets_401(alice_client, alice):
    created = alice_client.post(KEYS_URL, {"name": "short-lived"}, format="json").json()

    response = alice_client.delete(f"{KEYS_URL}/{created['id']}")

    assert response.status_code == 204
    assert response.content == b""
    stored = APIKey.objects.get(pk=created["id"])
    assert stored.is_active is False
    assert stored.revoked_at is not None
    refused = APIClient().get(KEYS_URL, HTTP_AUTHORIZATION=f"Bearer {created['key']}")
    assert_error(refused, 401)
    assert created["key"] not in refused.content.decode()
    # Revoked keys stay listed, with their status.
    listed = {row["id"]: row for row in alice_client.get(KEYS_URL).json()["results"]}
    assert listed[created["id"]]["status"] == "revoked"
    assert "key" not in listed[created["id"]]


def test_a_client_can_revoke_its_own_key(alice_client, alice):
    own = APIKey.objects.get(created_by=alice)

    assert alice_client.delete(f"{KEYS_URL}/{own.pk}").status_code == 204

    assert_error(alice_client.get(KEYS_URL), 401)


def test_bob_cannot_revoke_alices_key(alice, bob_client):
    alice_key, alice_plaintext = services.api_key_create(
        project=alice.personal_project, created_by=alice, name="alice-key"
    )

    response = bob_client.delete(f"{KEYS_URL}/{alice_key.pk}")

    assert_error(response, 404, "not_found")
    assert "alice-key" not in response.content.decode()
    stored = APIKey.objects.get(pk=alice_key.pk)
    assert stored.is_active is True
    assert stored.revoked_at is None
    assert APIClient().get(KEYS_URL, HTTP_X_API_KEY=alice_plaintext).status_code == 200


def test_lists_show_only_own_keys(alice, alice_client, bob, bob_client):
    services.api_key_create(project=alice.personal_project, created_by=alice, name="alice-extra")
    services.api_key_create(project=bob.personal_project, created_by=bob, name="bob-extra")

    alice_rows = alice_client.get(KEYS_URL).json()["results"]
    bob_rows = bob_client.get(KEYS_URL).json()["results"]

    def ids_of(user):
        return {str(pk) for pk in APIKey.objects.filter(created_by=user).values_list("pk", flat=True)}

    assert {r["id"] for r in alice_rows} == ids_of(alice)
    assert {r["id"] for r in bob_rows} == ids_of(bob)
    assert {r["name"] for r in bob_rows} == {"test", "bob-extra"}


def test_unknown_key_id_is_404(alice_client):
    assert_error(alice_client.delete(f"{KEYS_URL}/{uuid.uuid4()}"), 404, "not_found")


def test_keys_endpoints_need_authentication(db, anon_client):
    assert_error(anon_client.get(KEYS_URL), 401)
    assert_error(anon_client.post(KEYS_URL, {"name": "x"}, format="json"), 401)
    assert not APIKey.objects.exists()
