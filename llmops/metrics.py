"""Prometheus metrics: HTTP request counts and latencies of this process, plus collectors that apps
register (runs, tokens, cost, queue depth...). App collectors read the database at scrape time, so
their figures are the same whichever web process is scraped and survive restarts.

With PROMETHEUS_MULTIPROC_DIR set (gunicorn with several workers), request metrics of all worker
processes on the machine are merged (prometheus_client's multiprocess mode).
"""

import hmac
import ipaddress
import os
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

HTTP_REQUESTS = Counter("llmops_http_requests_total", "HTTP requests handled.", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "llmops_http_request_duration_seconds",
    "Time to handle an HTTP request.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

RATE_LIMIT_REJECTIONS = Counter(
    "llmops_rate_limit_rejections_total", "Requests refused with 429 by the request rate limits.", ["group"]
)

_app_collectors: list[Collector] = []


def register_collector(collector: Collector) -> None:
    """Called by apps in AppConfig.ready(); their collectors are added to every scrape."""
    _app_collectors.append(collector)


class MetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        # The URL's name, not the path: ids in paths would make unbounded label values.
        route = (match.view_name or match.route) if match is not None else "unmatched"
        HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
        return response


class _Combined:
    def __init__(self, collectors: list[Any]) -> None:
        self.collectors = collectors

    def collect(self) -> Any:
        for collector in self.collectors:
            yield from collector.collect()


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics. 404 when METRICS_ENABLED is off; with METRICS_TOKEN set a bearer token is required,
    without it only loopback clients are served."""
    if not settings.METRICS_ENABLED:
        raise Http404
    token = settings.METRICS_TOKEN
    if token:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), token.encode()):
            return HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
    elif not ipaddress.ip_address(request.META.get("REMOTE_ADDR", "0.0.0.0")).is_loopback:  # noqa: S104
        return HttpResponse("Forbidden: set METRICS_TOKEN to scrape remotely\n", status=403, content_type="text/plain")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        base: Any = registry
    else:
        base = REGISTRY
    output = generate_latest(_Combined([base, *_app_collectors]))  # type: ignore[arg-type]
    return HttpResponse(output, content_type=CONTENT_TYPE_LATEST)
