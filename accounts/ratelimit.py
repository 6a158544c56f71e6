"""Request rate limits: who is counted, against which rate, and the count itself.

A request is counted against its API key when it carries one that authenticates, else against its
client IP. Keys have two groups with separate rates: run creation and everything else; IPs have one.
Counting is django-ratelimit's: a fixed window per bucket and one atomic cache.add/incr per request in
the RATELIMIT_USE_CACHE cache, which is Redis (shared by every web process) when REDIS_URL is set.

This module imports no model, so that accounts.models can use `rate_is_valid` in its clean().
"""

import ipaddress
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.urls import Resolver404, resolve
from django_ratelimit.core import get_usage

if TYPE_CHECKING:
    from accounts.models import APIKey

logger = logging.getLogger("accounts.ratelimit")

RATE_FORMAT = re.compile(r"^([1-9][0-9]*)/([smhd])$")
RATE_FORMAT_HELP = "Use N/s, N/m, N/h or N/d with N at least 1, e.g. '600/m'."
_PERIOD_NAMES = {"s": "second", "m": "minute", "h": "hour", "d": "day"}

# Run creation, by URL name: POST /api/v1/runs and its alias POST /api/v1/run (runs.api.urls).
RUN_CREATE_URL_NAMES = frozenset({"run-list", "run-alias"})
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
    return path.startswith("/api/") and path not in EXEMPT_PATHS and not path.startswith(EXEMPT_PREFIXES)


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
