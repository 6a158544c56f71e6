"""Turns every API failure into the one error shape of `llmops.errors`."""

import logging
from typing import Any

import dramatiq.errors
import redis.exceptions
from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from llmops.errors import DomainError, FieldErrors, ServiceUnavailable, error_body

logger = logging.getLogger("llmops.errors")


def _flatten(detail: Any, prefix: str = "") -> FieldErrors:
    """DRF's nested error details as {"a.b.0.c": ["message", ...]}."""
    out: FieldErrors = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "non_field_errors" if key == "non_field_errors" and not prefix else str(key)
            out.update(_flatten(value, f"{prefix}.{name}" if prefix else name))
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            out[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                if item:
                    out.update(_flatten(item, f"{prefix}.{index}" if prefix else str(index)))
    else:
        out[prefix or "non_field_errors"] = [str(detail)]
    return out


_CODES = {
    400: "invalid_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "throttled",
}


# Redis (broker and cache) unreachable: the connection failed, timed out, or the server is loading.
_BROKER_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    dramatiq.errors.BrokerConnectionError,
)


def unavailable(exc: Exception) -> ServiceUnavailable | None:
    """The 503 for a dependency that is down, or None when `exc` is not one."""
    retry_after = settings.UNAVAILABLE_RETRY_AFTER_S
    if isinstance(exc, _BROKER_DOWN):
        return ServiceUnavailable(
            "The queue and cache (Redis) are unavailable; nothing was done. Retry shortly.",
            code="broker_unavailable",
            retry_after=retry_after,
        )
    # OperationalError: the server is gone or refuses connections (on SQLite, also a lock timeout).
    if isinstance(exc, (OperationalError, InterfaceError)):
        return ServiceUnavailable(
            "The database is unavailable; nothing was done. Retry shortly.",
            code="database_unavailable",
            retry_after=retry_after,
        )
    return None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF EXCEPTION_HANDLER: every failure, including crashes, as the one error shape."""
    headers: dict[str, str] = {}
    down = unavailable(exc)
    if down is not None:
        logger.warning("dependency unavailable: %s", down.code, exc_info=exc)
        exc = down
    if isinstance(exc, DomainError):
        set_rollback()
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status_code, headers=headers)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("payload_too_large", "Request body is too large."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    elif isinstance(exc, SuspiciousOperation):
        exc = drf_exceptions.ParseError(str(exc) or "Malformed request.")

    if isinstance(exc, drf_exceptions.APIException):
        set_rollback()
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
        if isinstance(exc, drf_exceptions.ValidationError):
            fields = _flatten(exc.detail)
            return Response(
                error_body("validation_error", "The request has invalid fields.", fields),
                status=exc.status_code,
                headers=headers,
            )
        code = _CODES.get(exc.status_code, str(exc.default_code))
        if isinstance(exc, drf_exceptions.ParseError):
            code = "parse_error"
        return Response(error_body(code, str(exc.detail)), status=exc.status_code, headers=headers)

    set_rollback()
    logger.exception("unhandled error in API view")
    return Response(
        error_body("server_error", "Internal server error."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def json_bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if isinstance(exception, RequestDataTooBig):
        return JsonResponse(error_body("payload_too_large", "Request body is too large."), status=413)
    return JsonResponse(error_body("invalid_request", "Bad request."), status=400)


def json_permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not _wants_json(request):
        from django.views.defaults import permission_denied

        return permission_denied(request, exception)
    return JsonResponse(error_body("permission_denied", "Permission denied."), status=403)


@csrf_exempt  # as a view, like the API's own views: a POST to a wrong path is a 404, not a CSRF failure
def json_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler404, and the view of every /api/ path no other route takes (llmops.urls mounts it last),
    because with DEBUG on Django answers an unrouted path with its HTML page, never with handler404."""
    if not _wants_json(request):
        from django.views.defaults import page_not_found

        return page_not_found(request, exception or Http404())
    near = _routed_neighbour(request)
    if near is None:
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    if near.endswith("/"):
        if settings.APPEND_SLASH and request.method in ("GET", "HEAD"):
            # CommonMiddleware's APPEND_SLASH redirect (/api/docs), which this catch-all route preempts.
            return HttpResponsePermanentRedirect(request.get_full_path(force_append_slash=True))
        message = f"Not found. Did you mean {near}?"
    else:
        message = f"Not found: API paths have no trailing slash. Did you mean {near}?"
    return JsonResponse(error_body("not_found", message), status=404)


def _routed_neighbour(request: HttpRequest) -> str | None:
    """The request's path with its trailing slash removed, or with one added, when a real view serves it."""
    info = request.path_info
    neighbour = info.rstrip("/") if info.endswith("/") else f"{info}/"
    try:
        match = resolve(neighbour, getattr(request, "urlconf", None))
    except Resolver404:
        return None
    if match.func is json_not_found:
        return None
    return request.path.removesuffix(info) + neighbour  # with the script prefix, if any


def json_server_error(request: HttpRequest) -> HttpResponse:
    if not _wants_json(request):
        from django.views.defaults import server_error

        return server_error(request)
    return JsonResponse(error_body("server_error", "Internal server error."), status=500)
