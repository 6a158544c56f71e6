"""Key rotation: a new secret under the same prefix, the old one ending at once or after a grace period.

Time is "frozen" by moving previous_secret_expires_at into the past, never by sleeping.
"""

import re
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import keys, services
from accounts.models import APIKey, Scope, all_scopes
from llmops.errors import Conflict, ValidationFailed
from llmops.tests.helpers import assert_error

KEYS_URL = "/api/v1/keys"
CHANGELIST_URL = "/admin/accounts/apikey/"
PLAINTEXTS = re.compile(r'<code class="api-key-plaintext"[^>]*>([^<]+)</code>')


def _rotate_url(api_key: APIKey) -> str:
    return f"{KEYS_URL}/{api_key.pk}/rotate"


def _works(plaintext: str) -> bool:
    """Whether the key authenticates through the API (401 if not; keys:manage is in every key here)."""
    status = APIClient().get(KEYS_URL, HTTP_AUTHORIZATION=f"Bearer {plaintext}").status_code
    assert status in (200, 401), status
    return status == 200


@pytest.fixture
def deploy_key(alice):
    return services.api_key_create(
        project=alice.personal_project, created_by=alice, name="deploy", scopes=[Scope.RUNS_EXECUTE, Scope.KEYS_MANAGE]
    )


def _end_grace(api_key: APIKey) -> None:
    APIKey.objects.filter(pk=api_key.pk).update(previous_secret_expires_at=timezone.now() - timedelta(seconds=1))


# --- API ----------------------------------------------------------------------------------------------


def test_rotate_returns_a_new_secret_under_the_same_prefix_and_ends_the_old_one_at_once(
    alice_client, alice, deploy_key
):
    api_key, old = deploy_key

    response = alice_client.post(_rotate_url(api_key), format="json")

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body = response.json()
    new = body["key"]
    parts = keys.split(new)
    assert parts is not None
    assert parts[0] == api_key.prefix == body["prefix"]
    assert new != old
    assert body["id"] == str(api_key.pk)
    assert body["scopes"] == ["runs:execute", "keys:manage"]
    assert body["status"] == "active"
    assert body["previous_secret_expires_at"] is None
    stored = APIKey.objects.get(pk=api_key.pk)
    assert stored.secret_hash == keys.hash_secret(parts[1])
    assert stored.previous_secret_hash == ""
    assert stored.rotated_at is not None
    assert timezone.now() - stored.rotated_at < timedelta(seconds=10)
    assert body["rotated_at"] is not None
    assert _works(new)
    assert not _works(old)
    # The rotated key stays in the list, without any secret.
    listed = {row["id"]: row for row in alice_client.get(KEYS_URL).json()["results"]}
    assert "key" not in listed[str(api_key.pk)]
    assert listed[str(api_key.pk)]["rotated_at"] is not None


def test_rotate_with_a_grace_period_keeps_the_old_secret_until_it_ends(alice_client, deploy_key):
    api_key, old = deploy_key

    response = alice_client.post(_rotate_url(api_key), {"grace_seconds": 3600}, format="json")

    assert response.status_code == 200
    new = response.json()["key"]
    stored = APIKey.objects.get(pk=api_key.pk)
    assert stored.previous_secret_hash == api_key.secret_hash
    assert stored.previous_secret_expires_at is not None
    expected_end = timezone.now() + timedelta(seconds=3600)
    assert abs((stored.previous_secret_expires_at - expected_end).total_seconds()) < 10
    assert response.json()["previous_secret_expires_at"] is not None
    assert _works(old)
    assert _works(new)

    _end_grace(api_key)

    assert not _works(old)
    assert _works(new)


def test_a_second_rotation_within_the_grace_period_ends_the_first_secret(deploy_key):
    api_key, first = deploy_key
    _, second = services.api_key_rotate(api_key=api_key, grace_seconds=600)

    _, third = services.api_key_rotate(api_key=api_key, grace_seconds=600)

    assert not _works(first)
    assert _works(second)
    assert _works(third)


def test_a_rotation_without_grace_ends_an_earlier_grace_period(deploy_key):
    api_key, first = deploy_key
    _, second = services.api_key_rotate(api_key=api_key, grace_seconds=600)

    _, third = services.api_key_rotate(api_key=api_key)

    assert [_works(first), _works(second), _works(third)] == [False, False, True]
    stored = APIKey.objects.get(pk=api_key.pk)
    assert (stored.previous_secret_hash, stored.previous_secret_expires_at) == ("", None)


@pytest.mark.parametrize("grace", [-1, 604801, "soon", None])
def test_rotate_with_a_bad_grace_period_is_400_and_changes_nothing(alice_client, deploy_key, grace):
    api_key, old = deploy_key

    response = alice_client.post(_rotate_url(api_key), {"grace_seconds": grace}, format="json")

    assert_error(response, 400, "validation_error", fields={"grace_seconds"})
    stored = APIKey.objects.get(pk=api_key.pk)
    assert (stored.secret_hash, stored.rotated_at) == (api_key.secret_hash, None)
    assert _works(old)


def test_rotate_accepts_the_longest_grace_period(alice_client, deploy_key):
    api_key, old = deploy_key

    response = alice_client.post(_rotate_url(api_key), {"grace_seconds": 604800}, format="json")

    assert response.status_code == 200
    assert _works(old)


def test_a_revoked_key_cannot_be_rotated(alice_client, deploy_key):
    api_key, _ = deploy_key
    services.api_key_revoke(api_key=api_key)

    response = alice_client.post(_rotate_url(api_key), format="json")

    error = assert_error(response, 409, "key_not_active")
    assert "revoked" in error["message"]
    stored = APIKey.objects.get(pk=api_key.pk)
    assert (stored.secret_hash, stored.rotated_at, stored.is_active) == (api_key.secret_hash, None, False)


def test_an_expired_key_cannot_be_rotated(alice_client, deploy_key):
    api_key, _ = deploy_key
    APIKey.objects.filter(pk=api_key.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    response = alice_client.post(_rotate_url(api_key), format="json")

    assert "expired" in assert_error(response, 409, "key_not_active")["message"]
    assert APIKey.objects.get(pk=api_key.pk).secret_hash == api_key.secret_hash


def test_bob_cannot_rotate_alices_key(bob_client, deploy_key):
    api_key, old = deploy_key

    response = bob_client.post(_rotate_url(api_key), {"grace_seconds": "invalid"}, format="json")

    assert_error(response, 404, "not_found")
    assert "deploy" not in response.content.decode()
    assert APIKey.objects.get(pk=api_key.pk).secret_hash == api_key.secret_hash
    assert _works(old)


def test_rotating_an_unknown_key_is_404(alice_client):
    assert_error(alice_client.post(f"{KEYS_URL}/{uuid.uuid4()}/rotate", format="json"), 404, "not_found")
    assert_error(alice_client.post(f"{KEYS_URL}/not-a-uuid/rotate", format="json"), 404, "not_found")


def test_a_key_can_rotate_itself(alice_client, alice):
    own = APIKey.objects.get(created_by=alice)

    response = alice_client.post(_rotate_url(own), format="json")

    assert response.status_code == 200
    assert_error(alice_client.get(KEYS_URL), 401, "not_authenticated")  # its old secret is gone
    assert _works(response.json()["key"])


def test_a_narrower_key_cannot_rotate_a_wider_one(alice, deploy_key):
    """Rotation hands out the key's plaintext, so it would grant the caller the key's scopes."""
    wider, wider_plaintext = services.api_key_create(
        project=alice.personal_project, created_by=alice, name="wider"
    )  # every scope
    narrow_subset, _ = services.api_key_create(
        project=alice.personal_project, created_by=alice, name="subset", scopes=[Scope.KEYS_MANAGE]
    )
    _, manager = deploy_key  # runs:execute + keys:manage
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {manager}")

    refused = client.post(_rotate_url(wider), format="json")
    allowed = client.post(_rotate_url(narrow_subset), format="json")

    error = assert_error(refused, 403, "insufficient_scope")
    assert "prompts:read" in error["message"]
    assert APIKey.objects.get(pk=wider.pk).secret_hash == wider.secret_hash
    assert _works(wider_plaintext)
    assert allowed.status_code == 200


# --- services -----------------------------------------------------------------------------------------


def test_api_key_rotate_refuses_inactive_keys_and_bad_grace(alice):
    api_key, _ = services.api_key_create(project=alice.personal_project, created_by=alice, name="k")
    with pytest.raises(ValidationFailed):
        services.api_key_rotate(api_key=api_key, grace_seconds=services.MAX_ROTATION_GRACE_SECONDS + 1)
    services.api_key_revoke(api_key=api_key)

    with pytest.raises(Conflict):
        services.api_key_rotate(api_key=api_key)

    assert APIKey.objects.get(pk=api_key.pk).secret_hash == api_key.secret_hash


def test_a_revoked_key_is_refused_with_its_old_secret_in_grace_too(alice):
    api_key, old = services.api_key_create(project=alice.personal_project, created_by=alice, name="k")
    _, new = services.api_key_rotate(api_key=api_key, grace_seconds=600)

    services.api_key_revoke(api_key=APIKey.objects.get(pk=api_key.pk))

    for plaintext in (old, new):
        with pytest.raises(services.APIKeyInvalid, match="revoked"):
            services.api_key_authenticate(raw_key=plaintext)


def test_an_ended_old_secret_is_refused_like_a_wrong_one(alice):
    api_key, old = services.api_key_create(project=alice.personal_project, created_by=alice, name="k")
    services.api_key_rotate(api_key=api_key, grace_seconds=600)
    _end_grace(api_key)

    with pytest.raises(services.APIKeyInvalid) as caught:
        services.api_key_authenticate(raw_key=old)

    assert str(caught.value) == "Invalid API key."


def test_rotation_keeps_scopes_expiry_and_name(alice):
    expires_at = timezone.now() + timedelta(days=3)
    api_key, _ = services.api_key_create(
        project=alice.personal_project, created_by=alice, name="k", scopes=["runs:read"], expires_at=expires_at
    )

    rotated, plaintext = services.api_key_rotate(api_key=api_key)

    stored = APIKey.objects.get(pk=api_key.pk)
    assert (stored.name, stored.scopes, stored.expires_at, stored.prefix) == (
        "k",
        ["runs:read"],
        expires_at,
        api_key.prefix,
    )
    assert services.api_key_authenticate(raw_key=plaintext) == stored == rotated


# --- admin --------------------------------------------------------------------------------------------


def _admin_rotate(admin_client, *api_keys: APIKey, grace: int | str | None = None):
    data: dict = {"action": "rotate_selected", "_selected_action": [str(k.pk) for k in api_keys]}
    if grace is not None:
        data |= {"confirm": "yes", "grace_seconds": str(grace)}
    return admin_client.post(CHANGELIST_URL, data)


def test_admin_rotate_asks_first_then_shows_each_new_key_once(admin_client, alice):
    first, first_old = services.api_key_create(project=alice.personal_project, created_by=alice, name="first")
    second, second_old = services.api_key_create(project=alice.personal_project, created_by=alice, name="second")

    confirmation = _admin_rotate(admin_client, first, second)

    assert confirmation.status_code == 200
    assert 'name="grace_seconds"' in confirmation.content.decode()
    assert APIKey.objects.get(pk=first.pk).rotated_at is None  # nothing happened yet
    assert _works(first_old)

    done = _admin_rotate(admin_client, first, second, grace=0)

    assert done.status_code == 200
    assert "no-store" in done["Cache-Control"]
    page = done.content.decode()
    shown = PLAINTEXTS.findall(page)
    assert len(shown) == 2
    assert {keys.split(p)[0] for p in shown} == {first.prefix, second.prefix}  # type: ignore[index]
    for plaintext in shown:
        assert page.count(plaintext) == 1
        assert _works(plaintext)
    assert not _works(first_old)
    assert not _works(second_old)
    assert LogEntry.objects.filter(object_id=str(first.pk), change_message="Rotated the secret.").exists()


def test_admin_rotate_with_grace_and_a_revoked_key_skipped(admin_client, alice):
    active, old = services.api_key_create(project=alice.personal_project, created_by=alice, name="active")
    revoked, _ = services.api_key_create(project=alice.personal_project, created_by=alice, name="revoked")
    services.api_key_revoke(api_key=revoked)

    done = _admin_rotate(admin_client, active, revoked, grace=600)

    page = done.content.decode()
    shown = PLAINTEXTS.findall(page)
    assert len(shown) == 1
    assert keys.split(shown[0])[0] == active.prefix  # type: ignore[index]
    assert "Not rotated" in page
    assert revoked.prefix in page
    assert APIKey.objects.get(pk=revoked.pk).secret_hash == revoked.secret_hash
    assert _works(old)  # within the grace period
    assert _works(shown[0])


def test_admin_rotate_with_a_bad_grace_shows_the_form_again(admin_client, alice):
    api_key, old = services.api_key_create(project=alice.personal_project, created_by=alice, name="k")

    response = _admin_rotate(admin_client, api_key, grace=-5)

    assert response.status_code == 200
    assert not PLAINTEXTS.findall(response.content.decode())
    assert 'name="grace_seconds"' in response.content.decode()
    assert APIKey.objects.get(pk=api_key.pk).secret_hash == api_key.secret_hash
    assert _works(old)


def test_admin_rotation_leaves_no_secret_in_the_database(admin_client, alice):
    """Not in the session, a message, the admin log or anywhere else: only the page showed it."""
    api_key, _ = services.api_key_create(
        project=alice.personal_project, created_by=alice, name="k", scopes=all_scopes()
    )
    shown = PLAINTEXTS.findall(_admin_rotate(admin_client, api_key, grace=0).content.decode())
    secret = keys.split(shown[0])[1]  # type: ignore[index]

    dump = StringIO()
    call_command("dumpdata", stdout=dump)

    assert secret not in dump.getvalue()
    assert admin_client.get(CHANGELIST_URL).status_code == 200
    assert secret not in admin_client.get(CHANGELIST_URL).content.decode()
