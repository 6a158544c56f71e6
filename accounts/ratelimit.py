"""Rate limits: requests per API key or client IP (who is counted, against which rate, the count
itself), and run tokens per API key and minute.

A request is counted against its API key when it carries one that authenticates, else against its
client IP. Keys have two groups with separate rates: run creation and everything else; IPs have one.
Counting is django-ratelimit's: a fixed window per bucket and one atomic cache.add/incr per request in
the RATELIMIT_USE_CACHE cache, which is Redis (shared by every web process) when REDIS_URL is set.

This module imports no model, so that accounts.models can use `rate_is_valid` in its clean().
"""

import ipaddress
import logging
import math
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.urls import Resolver404, resolve
from django_ratelimit.core import get_usage

from llmops.errors import DomainError

if TYPE_CHECKING:
    from accounts.models import APIKey

logger = logging.getLogger("accounts.ratelimit")

RATE_FORMAT = re.compile(r"^([1-9][0-9]*)/([smhd])$")
RATE_FORMAT_HELP = "Use N/s, N/m, N/h or N/d with N at least 1, e.g. '600/m'."
_PERIOD_NAMES = {"s": "second", "m": "minute", "h": "hour", "d": "day"}

# Run creation, by URL name: POST /api/v1/runs and its alias POST /api/v1/run (runs.api.urls).
RUN_CREATE_URL_NAMES = frozenset({"run-list", "run-alias", "gateway-chat-completions"})
# Load balancers probe health; schema and docs are static pages for people.
EXEMPT_PATHS = frozenset({"/api/v1/health"})
EXEMPT_PREFIXES = ("/api/schema/", "/api/docs/")

GROUP_REQUESTS = "llmops.requests"
GROUP_RUNS = "llmops.runs"
GROUP_ANON = "llmops.anon"


def rate_is_valid(value: str) -> bool:
    return RATE_FORMAT.match(value) is not None


def check_settings() -> None:
    """Raises ImproperlyConfigured for a malformed RATE_LIMIT_* default, so a typo fails at start-up."""
    for name in ("RATE_LIMIT_REQUESTS", "RATE_LIMIT_RUNS", "RATE_LIMIT_ANON"):
        if not rate_is_valid(getattr(settings, name)):
            raise ImproperlyConfigured(f"{name}={getattr(settings, name)!r}: {RATE_FORMAT_HELP}")
    _trusted_proxies(tuple(settings.RATE_LIMIT_TRUSTED_PROXIES))


def applies_to(path: str) -> bool:
    gated = path.startswith("/api/") or path.startswith("/v1/")  # the API, and the gateway's OpenAI paths
    return gated and path not in EXEMPT_PATHS and not path.startswith(EXEMPT_PREFIXES)


def is_run_creation(request: HttpRequest) -> bool:
    if request.method != "POST":
        return False
    try:
        match = resolve(request.path_info, getattr(request, "urlconf", None))
    except Resolver404:
        return False
    return match.url_name in RUN_CREATE_URL_NAMES


@lru_cache(maxsize=8)
def _trusted_proxies(entries: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())
    except ValueError as exc:
        raise ImproperlyConfigured(f"RATE_LIMIT_TRUSTED_PROXIES: {exc}") from None


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR, or with a trusted proxy as the peer, the rightmost X-Forwarded-For hop that is
    not a trusted proxy (hops further left are written by the client and could be anything).
    IPv6 addresses are counted per /64, which one client typically holds whole."""
    proxies = _trusted_proxies(tuple(settings.RATE_LIMIT_TRUSTED_PROXIES))
    address = _parse_ip(request.META.get("REMOTE_ADDR", ""))
    if address is not None and any(address in network for network in proxies):
        hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        for hop in reversed(hops):
            hop_address = _parse_ip(hop)
            if hop_address is None:
                break
            address = hop_address
            if not any(address in network for network in proxies):
                break
    if address is None:
        return "unknown"  # e.g. a Unix socket with no proxy configured: all such clients share one bucket
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False).network_address)
    return str(address)


@dataclass(frozen=True)
class Limit:
    group: str
    rate: str  # "N/s|m|h|d"
    bucket: str  # what is counted: "key:<id>" or "ip:<address>"
    subject: str  # for the 429 message: "run creations per minute for this API key"

    @property
    def message(self) -> str:
        count, period = self.rate.split("/")
        return f"Rate limit exceeded: {count} {self.subject.format(period=_PERIOD_NAMES[period])}."


def key_bucket(api_key: "APIKey") -> str:
    return f"key:{api_key.pk}"


def _key_rate(api_key: "APIKey", field: str, setting: str) -> str:
    override = getattr(api_key, field)
    if override and rate_is_valid(override):
        return str(override)
    if override:
        # Written around APIKey.clean() (shell, bulk update): the default is safer than a crash.
        logger.warning("API key %s has a malformed %s %r; using %s", api_key.prefix, field, override, setting)
    return str(getattr(settings, setting))


def limit_for(request: HttpRequest, api_key: "APIKey | None") -> Limit:
    """The limit this request counts against. Precondition: `api_key` authenticated for this request."""
    if api_key is None:
        return Limit(
            GROUP_ANON,
            settings.RATE_LIMIT_ANON,
            f"ip:{client_ip(request)}",
            "requests per {period} from this IP address without an API key",
        )
    if is_run_creation(request):
        return Limit(
            GROUP_RUNS,
            _key_rate(api_key, "run_rate_limit", "RATE_LIMIT_RUNS"),
            key_bucket(api_key),
            "run creations per {period} for this API key",
        )
    return Limit(
        GROUP_REQUESTS,
        _key_rate(api_key, "rate_limit", "RATE_LIMIT_REQUESTS"),
        key_bucket(api_key),
        "requests per {period} for this API key",
    )


@dataclass(frozen=True)
class Usage:
    limit: int
    remaining: int
    reset: int  # whole seconds until the current window frees
    exceeded: bool


def count(request: HttpRequest, limit: Limit) -> Usage | None:
    """Counts this request (atomically, before any view runs) and reports the bucket's usage.

    None when the count failed (cache unreachable): the request is then admitted, and logged,
    rather than the whole API failing with the cache.
    """
    try:
        usage = get_usage(
            request, group=limit.group, key=lambda group, req: limit.bucket, rate=limit.rate, increment=True
        )
    except Exception:
        logger.exception("rate limit not counted: cache error; request admitted")
        return None
    if usage is None:  # django-ratelimit's own RATELIMIT_ENABLE is off
        return None
    if usage["limit"] == 0:  # django-ratelimit's marker for "the cache returned no count"
        logger.error("rate limit not counted: cache returned no count; request admitted")
        return None
    # django-ratelimit's window for this bucket covers whole seconds up to and including
    # now + time_left, so it frees when the clock reaches the next whole second after that.
    return Usage(
        limit=usage["limit"],
        remaining=max(0, usage["limit"] - usage["count"]),
        reset=usage["time_left"] + 1,
        exceeded=usage["should_limit"],
    )


class TokensRateLimited(DomainError):
    """The API key used its tokens for the current minute; `retry_after` says when the minute ends."""

    status_code = HTTPStatus.TOO_MANY_REQUESTS
    code = "tokens_rate_limited"


# Tokens per minute per API key. The counter lives in the shared cache (Redis in production), one
# key per API key and minute; add + incr is atomic there, so concurrent workers never lose a count.


def _tokens_limit(api_key: "APIKey") -> int:
    if api_key.tokens_per_minute is not None:
        return api_key.tokens_per_minute
    return int(settings.RATE_LIMIT_TOKENS_PER_MINUTE)


def _tokens_cache_key(api_key_id: Any, minute: int) -> str:
    return f"billing:tpm:{api_key_id}:{minute}"  # the prefix predates this module: live counters keep it


def token_rate_check(*, api_key: "APIKey | None") -> None:
    """Refuses (429) a run when its key's tokens counted in the current minute reached the key's limit
    (APIKey.tokens_per_minute, else RATE_LIMIT_TOKENS_PER_MINUTE; 0 is no limit)."""
    if api_key is None:
        return
    limit = _tokens_limit(api_key)
    if limit <= 0:
        return
    now = time.time()
    minute = int(now // 60)
    try:
        used = int(cache.get(_tokens_cache_key(api_key.pk, minute), 0))
    except Exception:  # an unreachable cache must not stop every run: fail open, loudly
        logger.warning("tokens-per-minute counter unavailable; not enforced", exc_info=True)
        return
    if used >= limit:
        raise TokensRateLimited(
            f"This API key used {used} tokens this minute, its limit is {limit} tokens per minute.",
            retry_after=max(1, math.ceil((minute + 1) * 60 - now)),
        )


def token_usage_record(*, api_key: "APIKey | None", tokens: int) -> None:
    """Adds a finished run's tokens to its key's counter for the current minute (when a limit applies)."""
    if api_key is None or tokens <= 0 or _tokens_limit(api_key) <= 0:
        return
    key = _tokens_cache_key(api_key.pk, int(time.time() // 60))
    try:
        # The first run of the minute creates the counter; the others increment it (atomic in Redis).
        # It outlives its minute a little; checks only read the current minute's key.
        if not cache.add(key, tokens, timeout=120):
            cache.incr(key, tokens)
    except Exception:  # counting is best effort; it must never fail a finished run
        logger.warning("tokens-per-minute counter unavailable; usage not counted", exc_info=True)
