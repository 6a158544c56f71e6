import hashlib
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts import keys, services
from accounts.models import APIKey
from llmops.errors import ValidationFailed


def _dump_database() -> str:
    out = StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


def test_api_key_create_stores_only_the_sha256_of_the_secret(alice):
    api_key, plaintext = services.api_key_create(project=alice.personal_project, created_by=alice, name="ci")
    parts = keys.split(plaintext)
    assert parts is not None
    prefix, secret = parts

    row = APIKey.objects.filter(pk=api_key.pk).values().get()
    assert row["prefix"] == prefix
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    for value in row.values():
        assert secret not in str(value)
        assert plaintext not in str(value)
    dump = _dump_database()
    assert prefix in dump
    assert secret not in dump


def test_api_key_create_refuses_an_expiry_in_the_past(alice):
    with pytest.raises(ValidationFailed) as caught:
        services.api_key_create(
            project=alice.personal_project,
            created_by=alice,
            name="old",
            expires_at=timezone.now() - timedelta(seconds=1),
        )

    assert set(caught.value.fields) == {"expires_at"}
    assert not APIKey.objects.exists()


def test_api_key_authenticate_returns_the_active_key(alice):
    api_key, plaintext = services.api_key_create(project=alice.personal_project, created_by=alice, name="ci")

    assert services.api_key_authenticate(raw_key=plaintext) == api_key


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda key: key + "x", id="wrong-secret"),
        pytest.param(lambda key: "llmk_000000000000." + key.split(".")[1], id="unknown-prefix"),
        pytest.param(lambda key: key.replace(".", ""), id="malformed"),
    ],
)
def test_api_key_authenticate_refuses_wrong_keys_without_echoing_them(alice, mangle):
    _, plaintext = services.api_key_create(project=alice.personal_project, created_by=alice, name="ci")
    raw_key = mangle(plaintext)

    with pytest.raises(services.APIKeyInvalid) as caught:
        services.api_key_authenticate(raw_key=raw_key)

    assert str(caught.value) == "Invalid API key."


def test_api_key_revoke_is_one_way_and_keeps_the_first_time(alice):
    api_key, plaintext = services.api_key_create(project=alice.personal_project, created_by=alice, name="ci")

    services.api_key_revoke(api_key=api_key)
    first_revoked_at = APIKey.objects.get(pk=api_key.pk).revoked_at
    services.api_key_revoke(api_key=APIKey.objects.get(pk=api_key.pk))

    stored = APIKey.objects.get(pk=api_key.pk)
    assert stored.is_active is False
    assert stored.status == "revoked"
    assert stored.revoked_at == first_revoked_at is not None
    with pytest.raises(services.APIKeyInvalid, match="revoked"):
        services.api_key_authenticate(raw_key=plaintext)


def test_api_key_authenticate_refuses_an_expired_key(alice):
    api_key, plaintext = services.api_key_create(
        project=alice.personal_project, created_by=alice, name="ci", expires_at=timezone.now() + timedelta(days=1)
    )
    APIKey.objects.filter(pk=api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    with pytest.raises(services.APIKeyInvalid, match="expired"):
        services.api_key_authenticate(raw_key=plaintext)
    assert APIKey.objects.get(pk=api_key.pk).status == "expired"


def test_api_key_authenticate_refuses_a_disabled_user(alice):
    _, plaintext = services.api_key_create(project=alice.personal_project, created_by=alice, name="ci")
    alice.is_active = False
    alice.save()

    with pytest.raises(services.APIKeyInvalid, match="disabled"):
        services.api_key_authenticate(raw_key=plaintext)


def test_last_used_at_is_written_once_per_resolution_window(alice, settings):
    settings.API_KEY_LAST_USED_RESOLUTION = 60
    api_key, plaintext = services.api_key_create(project=alice.personal_project, created_by=alice, name="ci")
    assert api_key.last_used_at is None

    services.api_key_authenticate(raw_key=plaintext)
    first = APIKey.objects.get(pk=api_key.pk).last_used_at
    services.api_key_authenticate(raw_key=plaintext)
    assert first is not None
    assert APIKey.objects.get(pk=api_key.pk).last_used_at == first

    stale = timezone.now() - timedelta(seconds=61)
    APIKey.objects.filter(pk=api_key.pk).update(last_used_at=stale)
    services.api_key_authenticate(raw_key=plaintext)
    refreshed = APIKey.objects.get(pk=api_key.pk).last_used_at
    assert refreshed is not None
    assert refreshed > stale + timedelta(seconds=60)
