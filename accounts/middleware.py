"""Request rate limits for the API (see accounts.ratelimit for who is counted and how)."""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions

from accounts import ratelimit
from accounts.authentication import APIKeyAuthentication
from accounts.models import APIKey
from accounts.services import APIKeyInvalid, api_key_authenticate
from llmops.errors import error_body
from llmops.metrics import RATE_LIMIT_REJECTIONS
from llmops.openai_errors import is_openai_path, openai_error_body


def _authenticated_api_key(request: HttpRequest) -> APIKey | None:
    """The request's API key if it authenticates, kept on the request for APIKeyAuthentication to reuse.

    A missing or failing key is left for DRF to refuse with 401; such requests count against the IP.
    """
    try:
        raw_key = APIKeyAuthentication()._raw_key(request)
    except exceptions.AuthenticationFailed:
        return None
    if raw_key is None:
        return None
    try:
        api_key = api_key_authenticate(raw_key=raw_key)
    except APIKeyInvalid:
        return None
    request._authenticated_api_key = api_key  # type: ignore[attr-defined]
    return api_key


class RateLimitMiddleware:
    """Counts every /api/ and /v1/ (gateway) request before its view runs, so failed requests count too, and answers 429
    over the limit. Every counted response carries X-RateLimit-Limit, -Remaining and -Reset."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        ratelimit.check_settings()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not settings.RATE_LIMIT_ENABLED or not ratelimit.applies_to(request.path_info):
            return self.get_response(request)
        limit = ratelimit.limit_for(request, _authenticated_api_key(request))
        usage = ratelimit.count(request, limit)
        if usage is None:
            return self.get_response(request)
        if usage.exceeded:
            body = error_body("rate_limited", limit.message)
            if is_openai_path(request.path_info):
                body = openai_error_body(body, 429)
            response: HttpResponse = JsonResponse(body, status=429)
            response["Retry-After"] = str(usage.reset)
            RATE_LIMIT_REJECTIONS.labels(limit.group.removeprefix("llmops.")).inc()
        else:
            response = self.get_response(request)
        response["X-RateLimit-Limit"] = str(usage.limit)
        response["X-RateLimit-Remaining"] = str(usage.remaining)
        response["X-RateLimit-Reset"] = str(usage.reset)
        return response
