"""Writes for users and API keys."""

import copy
from collections.abc import Iterable
from datetime import datetime, timedelta
from http import HTTPStatus

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from accounts import keys
from accounts.models import ROLE_SCOPES, APIKey, Membership, Project, Role, Scope, User, all_scopes, role_at_least
from llmops import config_cache
from llmops.config_cache import MISS, ProcessCache
from llmops.errors import Conflict, DomainError, ValidationFailed

# The rows of the keys this process authenticated recently, by prefix (llmops/config_cache.py). Every
# authentication still checks the secret against the stored hash, and expiry and the rotation's grace
# period against the clock, so a cached row never lets a wrong secret in nor outlives its expiry.
key_rows: ProcessCache[APIKey] = ProcessCache("api keys")

# The longest time a rotated-out secret may keep working: a week, enough for a weekly deploy.
MAX_ROTATION_GRACE_SECONDS = 7 * 24 * 3600


class APIKeyInvalid(Exception):
    """The presented key is unknown, revoked, expired or rotated out. The message never contains the key."""


class InsufficientScope(DomainError):
    """The acting key lacks a scope the operation needs."""

    status_code = HTTPStatus.FORBIDDEN
    code = "insufficient_scope"


class InsufficientRole(DomainError):
    """The member's role does not allow this action in the project."""

    status_code = HTTPStatus.FORBIDDEN
    code = "insufficient_role"


def role_check(*, role: str | None, minimum: str, action: str) -> None:
    """Raises InsufficientRole unless `role` (None: staff tooling, which may do anything) is at least `minimum`."""
    if role is not None and not role_at_least(role, minimum):
        raise InsufficientRole(f"Your role in this project ({role}) does not allow {action}: it needs {minimum}.")


def scopes_clean(*, scopes: Iterable[str]) -> list[str]:
    """Known scopes, deduplicated, in the order of `Scope`; raises ValidationFailed naming unknown ones."""
    requested = list(scopes)
    unknown = [scope for scope in requested if scope not in Scope.values]
    if unknown:
        names = ", ".join(repr(scope) for scope in unknown)
        message = f"Unknown scope {names}; valid scopes are {', '.join(all_scopes())}."
        raise ValidationFailed(message, fields={"scopes": [message]})
    if not requested:
        message = "A key needs at least one scope."
        raise ValidationFailed(message, fields={"scopes": [message]})
    return [scope for scope in all_scopes() if scope in requested]


def _scopes_not_held(*, scopes: Iterable[str], acting_key: APIKey | None) -> list[str]:
    """The scopes in `scopes` that `acting_key` does not have; none when no key acts (staff, CLI)."""
    if acting_key is None:
        return []
    return [scope for scope in scopes if scope not in acting_key.scopes]


def member_role(*, project: Project, user: User) -> str | None:
    """`user`'s role in `project`; None for a non-member."""
    return Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()


@transaction.atomic
def api_key_create(
    *,
    project: Project,
    created_by: User,
    name: str,
    expires_at: datetime | None = None,
    scopes: Iterable[str] | None = None,
    created_by_key: APIKey | None = None,
) -> tuple[APIKey, str]:
    """Creates a key of `project` (all scopes unless `scopes` is given) and returns it with its plaintext,
    which is never available again.

    `created_by` must be an admin (or owner) of the project. A key can only be created with scopes
    `created_by_key` has, and with no scope the creator's role does not allow.
    """
    role = member_role(project=project, user=created_by)
    if role is None or not role_at_least(role, Role.ADMIN):
        raise InsufficientRole(
            f"Creating API keys needs the admin role in the project; {created_by.username} is {role or 'not a member'}."
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed("expires_at must be in the future.", fields={"expires_at": ["Must be in the future."]})
    granted = scopes_clean(scopes=all_scopes() if scopes is None else scopes)
    beyond_role = [scope for scope in granted if scope not in ROLE_SCOPES[role]]
    not_held = beyond_role + _scopes_not_held(scopes=granted, acting_key=created_by_key)
    if not_held:
        message = f"A key cannot grant scopes it does not have: {', '.join(not_held)}."
        raise ValidationFailed(message, fields={"scopes": [message]})
    prefix, secret = keys.generate()
    api_key = APIKey.objects.create(
        project=project,
        created_by=created_by,
        name=name,
        prefix=prefix,
        secret_hash=keys.hash_secret(secret),
        expires_at=expires_at,
        scopes=granted,
    )
    return api_key, keys.join(prefix, secret)


@transaction.atomic
def api_key_rotate(
    *, api_key: APIKey, grace_seconds: int = 0, rotated_by_key: APIKey | None = None
) -> tuple[APIKey, str]:
    """Gives the key a new secret (same prefix) and returns it with the new plaintext, shown once.

    Precondition: the key is active and unexpired (else Conflict). The old secret stops working at once,
    or after `grace_seconds`; a second rotation within a grace period ends the first one's old secret.
    """
    if not 0 <= grace_seconds <= MAX_ROTATION_GRACE_SECONDS:
        message = f"grace_seconds must be between 0 and {MAX_ROTATION_GRACE_SECONDS}."
        raise ValidationFailed(message, fields={"grace_seconds": [message]})
    # Locked so that two concurrent rotations cannot both keep "the previous" secret.
    locked = APIKey.objects.select_for_update().get(pk=api_key.pk)
    if locked.status != "active":
        raise Conflict(f"The key is {locked.status}; only active keys can be rotated.", code="key_not_active")
    # Rotating hands out the key's plaintext, so it must not grant the caller more than it has.
    not_held = _scopes_not_held(scopes=locked.scopes, acting_key=rotated_by_key)
    if not_held:
        raise InsufficientScope(f"This key has scopes yours does not: {', '.join(not_held)}; it cannot rotate it.")
    _, secret = keys.generate()
    now = timezone.now()
    if grace_seconds:
        locked.previous_secret_hash = locked.secret_hash
        locked.previous_secret_expires_at = now + timedelta(seconds=grace_seconds)
    else:
        locked.previous_secret_hash = ""
        locked.previous_secret_expires_at = None
    locked.secret_hash = keys.hash_secret(secret)
    locked.rotated_at = now
    locked.save(
        update_fields=["secret_hash", "previous_secret_hash", "previous_secret_expires_at", "rotated_at", "updated_at"]
    )
    return locked, keys.join(locked.prefix, secret)


def api_key_revoke(*, api_key: APIKey) -> APIKey:
    """Deactivates the key at once; revoking twice keeps the first revocation time."""
    if api_key.is_active:
        api_key.is_active = False
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["is_active", "revoked_at", "updated_at"])
    return api_key


def api_key_authenticate(*, raw_key: str) -> APIKey:
    """The active key matching `raw_key` (its current secret, or its previous one during a rotation's
    grace period); raises APIKeyInvalid otherwise."""
    parts = keys.split(raw_key)
    if parts is None:
        raise APIKeyInvalid("Invalid API key.")
    prefix, secret = parts
    token = config_cache.generation()
    api_key = key_rows.get(prefix, token)
    if api_key is MISS:
        api_key = _api_key_read(prefix)
        if api_key is None:
            raise APIKeyInvalid("Invalid API key.")
        key_rows.put(prefix, token, api_key)  # rows of existing keys only: a wrong prefix is never kept
    assert isinstance(api_key, APIKey)
    # Both comparisons always run, so timing does not tell which secret (if either) matched.
    matches_current = keys.secret_matches(secret, api_key.secret_hash)
    matches_previous = keys.secret_matches(secret, api_key.previous_secret_hash)
    in_grace = api_key.previous_secret_expires_at is not None and api_key.previous_secret_expires_at > timezone.now()
    if not (matches_current or (matches_previous and in_grace)):
        raise APIKeyInvalid("Invalid API key.")
    # States are only disclosed to a caller who holds the secret.
    if not api_key.is_active:
        raise APIKeyInvalid("API key has been revoked.")
    if api_key.is_expired:
        raise APIKeyInvalid("API key has expired.")
    if not api_key.created_by.is_active:
        raise APIKeyInvalid("User account is disabled.")
    role = api_key.creator_role  # type: ignore[attr-defined]
    if role is None:
        raise APIKeyInvalid("The key's creator is no longer a member of its project.")
    _touch_last_used(api_key)  # on the cached row too, so it is not written again in the window
    api_key = copy.copy(api_key)  # the caller's own: a cached row is shared by every request
    api_key.member_role = role
    return api_key


def _api_key_read(prefix: str) -> APIKey | None:
    """The key row with its creator, project and the creator's role in it, in one query."""
    creator_role = Membership.objects.filter(project=OuterRef("project"), user=OuterRef("created_by")).values("role")
    return (
        APIKey.objects.select_related("created_by", "project")
        .annotate(creator_role=Subquery(creator_role[:1]))
        .filter(prefix=prefix)
        .first()
    )


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
