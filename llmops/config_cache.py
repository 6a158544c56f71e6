"""Each process's cache of the rows every call reads and staff rarely change (API keys, providers,
prices, prompts and their labels, which budgets apply, which webhook endpoints subscribe),
invalidated at once across processes.

A gateway call used to read each of them from the database, and the ORM spends more time building
those queries than the database spends answering them (bench/README.md). A process keeps what it read
for CONFIG_CACHE_SECONDS (0, the embedded default's setting, turns every cache off: there a management
command in another process could not tell the web process), and every use of a cached row first
checks a *generation* token in the shared cache (Redis):

- any write to one of those rows sets a new random token once its transaction commits (the apps'
  signals call `invalidate_on_commit`; services that write in bulk call `invalidate` themselves), and
  every process then reads the database again: a revoked key, a disabled provider, a new budget or a
  changed price holds from the next request on, in every process;
- a token lost with a Redis restart reads as a new one, which also invalidates everything; when the
  shared cache cannot be reached, nothing is served from memory (every lookup reads the database);
- a request reads the token once (from `request_started` to `request_finished`, streamed bodies
  included), so one call costs one round trip to Redis however many caches it consults. Outside a
  request (a worker's message, a command) each lookup reads it.

The one window left: a token write that fails (Redis down at the moment of the change) leaves other
processes' copies valid for at most CONFIG_CACHE_SECONDS; the failure is logged.
"""

import logging
import threading
import time
import uuid
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import transaction

logger = logging.getLogger(__name__)

GENERATION_KEY = "llmops:config-generation"

T = TypeVar("T")


class _Unset:
    """No token read yet in this request (`_UNREAD`), or no request at all (`_UNSCOPED`)."""


_UNREAD = _Unset()
_UNSCOPED = _Unset()
_request_token: ContextVar[str | _Unset | None] = ContextVar("config_cache_token", default=_UNSCOPED)
MISS = object()  # what ProcessCache.get returns for a key it does not hold (None may be a value)
_caches: list["ProcessCache[Any]"] = []


def enabled() -> bool:
    return settings.CONFIG_CACHE_SECONDS > 0


def _token_read() -> str | None:
    try:
        token = cache.get(GENERATION_KEY)
        if token is None:
            cache.add(GENERATION_KEY, uuid.uuid4().hex, timeout=None)
            token = cache.get(GENERATION_KEY)
    except Exception:
        logger.warning("config cache: shared cache unreachable; reading from the database", exc_info=True)
        return None
    return token if isinstance(token, str) else None


def generation() -> str | None:
    """The current token (made when there is none), read once per request; None when the shared cache
    cannot be reached or the caches are off."""
    if not enabled():
        return None
    memo = _request_token.get()
    if not isinstance(memo, _Unset):
        return memo
    token = _token_read()
    if memo is _UNREAD:
        _request_token.set(token)
    return token


def _request_begin(sender: Any, **kwargs: Any) -> None:
    _request_token.set(_UNREAD)


def _request_end(sender: Any, **kwargs: Any) -> None:
    _request_token.set(_UNSCOPED)


request_started.connect(_request_begin, dispatch_uid="llmops.config_cache.begin")
request_finished.connect(_request_end, dispatch_uid="llmops.config_cache.end")


class ProcessCache(Generic[T]):
    """One kind of cached value, by key, each kept with the token it was read under.

    Values are shared by every thread of the process: callers must not change them (copy a model
    instance before handing it to code that may)."""

    def __init__(self, name: str, *, max_entries: int = 10_000) -> None:
        self.name = name
        # Bounds memory against many distinct keys (say, many active API keys); only what exists
        # or was asked for is cached, so this is a bound, not a defence.
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[str, float, T]] = {}
        self._lock = threading.Lock()
        _caches.append(self)

    def get(self, key: Hashable, token: str | None) -> T | object:
        """The value of `key` read under `token` less than CONFIG_CACHE_SECONDS ago, else `MISS`."""
        if token is None:
            return MISS
        entry = self._entries.get(key)
        if entry is None:
            return MISS
        entry_token, read_at, value = entry
        if entry_token != token or time.monotonic() - read_at >= settings.CONFIG_CACHE_SECONDS:
            self._entries.pop(key, None)
            return MISS
        return value

    def put(self, key: Hashable, token: str | None, value: T) -> None:
        """Keeps `value`, read under `token` (read *before* the query, so a change committed between
        the two leaves a token the value does not match)."""
        if token is None:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (token, time.monotonic(), value)

    def fetch(self, key: Hashable, load: Callable[[], T]) -> T:
        """The cached value of `key`, or `load()`'s (kept for the next call)."""
        token = generation()
        value = self.get(key, token)
        if value is MISS:
            value = load()
            self.put(key, token, value)
        return value  # type: ignore[return-value]

    def clear(self) -> None:
        self._entries.clear()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries


def invalidate() -> None:
    """Every process's cached rows are stale from now on: a new token, and this process's copies go."""
    for process_cache in _caches:
        process_cache.clear()
    if not isinstance(_request_token.get(), _Unset):
        _request_token.set(_UNREAD)  # this request reads the new token on its next lookup
    if not enabled():
        return
    try:
        cache.set(GENERATION_KEY, uuid.uuid4().hex, timeout=None)
    except Exception:
        logger.error(
            "config cache: could not publish a new generation; other processes may serve a changed row "
            "for up to CONFIG_CACHE_SECONDS",
            exc_info=True,
        )


def invalidate_on_commit(sender: Any = None, **kwargs: Any) -> None:
    """A signal receiver: invalidates once the write's transaction commits (before it, another request
    could read the old row under the new token)."""
    transaction.on_commit(invalidate)


def invalidate_on_writes(*models: Any, app: str) -> None:
    """Connects invalidate_on_commit to every save and delete of `models` (an app's signals module)."""
    from django.db.models.signals import post_delete, post_save

    for model in models:
        name = model._meta.model_name
        post_save.connect(invalidate_on_commit, sender=model, dispatch_uid=f"{app}.config_cache.{name}.saved")
        post_delete.connect(invalidate_on_commit, sender=model, dispatch_uid=f"{app}.config_cache.{name}.deleted")
