"""Writes for users and API keys."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts import keys
from accounts.models import APIKey, User
from llmops.errors import ValidationFailed


class APIKeyInvalid(Exception):
    """The presented key is unknown, revoked or expired. The message never contains the key."""


@transaction.atomic
def api_key_create(*, user: User, name: str, expires_at: datetime | None = None) -> tuple[APIKey, str]:
    """Creates a key and returns it with its plaintext, which is never available again."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed("expires_at must be in the future.", fields={"expires_at": ["Must be in the future."]})
    prefix, secret = keys.generate()
    api_key = APIKey.objects.create(
        user=user, name=name, prefix=prefix, secret_hash=keys.hash_secret(secret), expires_at=expires_at
    )
    return api_key, keys.join(prefix, secret)


def api_key_revoke(*, api_key: APIKey) -> APIKey:
    """Deactivates the key at once; revoking twice keeps the first revocation time."""
    if api_key.is_active:
        api_key.is_active = False
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["is_active", "revoked_at", "updated_at"])
    return api_key


def api_key_authenticate(*, raw_key: str) -> APIKey:
    """The active key matching `raw_key`; raises APIKeyInvalid otherwise."""
    parts = keys.split(raw_key)
    if parts is None:
        raise APIKeyInvalid("Invalid API key.")
    prefix, secret = parts
    api_key = APIKey.objects.select_related("user").filter(prefix=prefix).first()
    if api_key is None or not keys.secret_matches(secret, api_key.secret_hash):
        raise APIKeyInvalid("Invalid API key.")
    # States are only disclosed to a caller who holds the secret.
    if not api_key.is_active:
        raise APIKeyInvalid("API key has been revoked.")
    if api_key.is_expired:
        raise APIKeyInvalid("API key has expired.")
    if not api_key.user.is_active:
        raise APIKeyInvalid("User account is disabled.")
    _touch_last_used(api_key)
    return api_key


def _touch_last_used(api_key: APIKey) -> None:
    """Refreshes last_used_at at most once per API_KEY_LAST_USED_RESOLUTION seconds.

    A conditional UPDATE means concurrent requests write at most once per window and
    most requests write nothing.
    """
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION)
    if api_key.last_used_at is not None and api_key.last_used_at > stale_before:
        return
    APIKey.objects.filter(pk=api_key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale_before)
    ).update(last_used_at=now)
    api_key.last_used_at = now
