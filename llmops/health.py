"""GET /api/v1/health: the state of each dependency (database, cache, broker), and with
`?providers=1` whether each model provider answers.

Providers are asked only when asked for: a monitor polling the plain check must not wait on, or
send traffic to, every provider. Their state does not change the status code either: a provider
that is down is not this service being down (runs against it fail with their own error).
The app that owns the providers registers their check (`register_provider_check`): llmops imports no app.
"""

import logging
import uuid
from collections.abc import Callable
from typing import Any

import dramatiq
from django.core.cache import cache
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

logger = logging.getLogger(__name__)


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def check_cache() -> str:
    probe = f"health:{uuid.uuid4().hex}"
    cache.set(probe, "1", timeout=5)
    if cache.get(probe) != "1":
        raise RuntimeError("cache did not return the value just written")
    cache.delete(probe)
    return "ok"


def check_broker() -> str:
    broker = dramatiq.get_broker()
    client = getattr(broker, "client", None)
    if client is None:
        return "ok (in-process)"
    client.ping()
    return "ok"


CHECKS = {"database": check_database, "cache": check_cache, "broker": check_broker}

# Each returns provider name -> state ("ok", "disabled", "error: <code>", ...); see register_provider_check.
ProviderCheck = Callable[[], dict[str, str]]
_provider_checks: list[ProviderCheck] = []


def register_provider_check(check: ProviderCheck) -> None:
    """Called in AppConfig.ready() by the app that owns the providers. The check must answer within a
    few seconds whatever the providers do (short timeouts), and is run only for `?providers=1`."""
    _provider_checks.append(check)


def check_providers() -> dict[str, str]:
    states: dict[str, str] = {}
    for check in _provider_checks:
        try:
            states.update(check())
        except Exception as exc:  # a broken check is reported like a broken dependency, never a 500
            name = getattr(check, "__name__", "provider check")
            states[name] = f"error: {type(exc).__name__}"
            logger.warning("provider health check failed", extra={"check": name, "error": str(exc)})
    return states


class HealthQuerySerializer(serializers.Serializer):
    # A choice, not a boolean: DRF's BooleanField takes "yes", "on", "True"... which the schema would not say.
    providers = serializers.ChoiceField(
        choices=["0", "1"],
        default="0",
        help_text="`1`: also ask each enabled provider whether it answers (`providers` in the response). "
        "Slower, by up to a few seconds; the status code still reflects this service's dependencies only.",
    )


_Health = inline_serializer(
    "Health",
    fields={
        "status": serializers.ChoiceField(choices=["ok", "unavailable"]),
        "checks": serializers.DictField(child=serializers.CharField()),
        "providers": serializers.DictField(
            child=serializers.CharField(),
            required=False,
            help_text="With `?providers=1` only: each provider's state by name: `ok` (it listed its models), "
            "`disabled`, `not checked (...)`, or `error: <code>` (e.g. `error: connection_error`).",
        ),
    },
)


class HealthView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        summary="Dependency health",
        tags=["health"],
        parameters=[HealthQuerySerializer],
        responses={200: _Health, 503: _Health},
    )
    def get(self, request: Request) -> Response:
        # A plain dict, not the QueryDict: DRF would read a blank `?providers=` as absent instead of invalid.
        query = HealthQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        results: dict[str, str] = {}
        healthy = True
        for name, check in CHECKS.items():
            try:
                results[name] = check()
            except Exception as exc:  # any failure of a dependency means "down", never a 500
                healthy = False
                results[name] = f"error: {type(exc).__name__}"
                logger.warning("health check failed", extra={"check": name, "error": str(exc)})
        body: dict[str, Any] = {"status": "ok" if healthy else "unavailable", "checks": results}
        if query.validated_data["providers"] == "1":
            body["providers"] = check_providers()
        return Response(body, status=200 if healthy else 503)
