"""Each process's cache of API keys it authenticated recently, invalidated at once across processes.

Authenticating a key is one query, but the ORM spends more time building it (the key with its
creator and project, and a subquery for the creator's role) than the database spends answering it:
about a fifth of a gateway call's CPU (bench/README.md). A process keeps the key rows it read for
API_KEY_CACHE_SECONDS (0, the embedded default's setting, turns the cache off: there a management
command in another process could not tell the web process). Every authentication still

- reads a *generation* token from the shared cache (Redis). Any write to a key, a user, a project or a
  membership sets a new random token once its transaction commits (accounts.signals), and each
  process then reads its keys from the database again: a revoked key, a rotated secret, a removed
  member or a disabled user is refused by the next request, in every process. A token lost with a
  Redis restart reads as a new one, which also invalidates everything. When the shared cache cannot
  be reached, nothing is served from memory (every request reads the database);
- checks the secret against the stored hash, and expiry and the rotation's grace period against the
  clock (accounts.services.api_key_authenticate), so a cached row never lets a wrong secret in nor
  outlives its expiry.

The one window left: a token write that fails (Redis down at the moment of the change) leaves other
processes' copies valid for at most API_KEY_CACHE_SECONDS; the failure is logged.
"""

import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache

if TYPE_CHECKING:
    from accounts.models import APIKey

logger = logging.getLogger(__name__)

GENERATION_KEY = "accounts:key-generation"
# Rows of existing keys only (a wrong prefix is never cached), so this bounds memory against a
# deployment with very many active keys rather than against an attacker.
MAX_ENTRIES = 10_000

_entries: dict[str, tuple[str, float, "APIKey"]] = {}
_lock = threading.Lock()


def enabled() -> bool:
    return settings.API_KEY_CACHE_SECONDS > 0


def generation() -> str | None:
    """The current token, made when there is none; None when the shared cache cannot be reached."""
    try:
        token = cache.get(GENERATION_KEY)
        if token is None:
            cache.add(GENERATION_KEY, uuid.uuid4().hex, timeout=None)
            token = cache.get(GENERATION_KEY)
    except Exception:
        logger.warning("key cache: shared cache unreachable; authenticating from the database", exc_info=True)
        return None
    return token if isinstance(token, str) else None


def get(prefix: str, token: str | None) -> "APIKey | None":
    """The cached row of the key `prefix`, if read under `token` less than API_KEY_CACHE_SECONDS ago."""
    if token is None:
        return None
    entry = _entries.get(prefix)
    if entry is None:
        return None
    entry_token, read_at, api_key = entry
    if entry_token != token or time.monotonic() - read_at >= settings.API_KEY_CACHE_SECONDS:
        _entries.pop(prefix, None)
        return None
    return api_key


def put(prefix: str, token: str | None, api_key: "APIKey") -> None:
    """Keeps the row read under `token` (read *before* the query, so a change committed between
    the two leaves a token the row does not match)."""
    if token is None:
        return
    with _lock:
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[prefix] = (token, time.monotonic(), api_key)


def invalidate() -> None:
    """Every process's cached keys are stale from now on: a new token, and this process's copies go."""
    _entries.clear()
    if not enabled():
        return
    try:
        cache.set(GENERATION_KEY, uuid.uuid4().hex, timeout=None)
    except Exception:
        logger.error(
            "key cache: could not publish a new generation; other processes may serve a changed key "
            "for up to API_KEY_CACHE_SECONDS",
            exc_info=True,
        )
