"""GET /api/v1/health: the state of each dependency (database, cache, broker)."""

import logging
import uuid
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

_Health = inline_serializer(
    "Health",
    fields={
        "status": serializers.ChoiceField(choices=["ok", "unavailable"]),
        "checks": serializers.DictField(child=serializers.CharField()),
    },
)


class HealthView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(summary="Dependency health", tags=["health"], responses={200: _Health, 503: _Health})
    def get(self, request: Request) -> Response:
        results: dict[str, str] = {}
        healthy = True
        for name, check in CHECKS.items():
            try:
                results[name] = check()
            except Exception as exc:  # any failure of a dependency means "down", never a 500
                healthy = False
                results[name] = f"error: {type(exc).__name__}"
                logger.warning("health check failed", extra={"check": name, "error": str(exc)})
        return Response(
            {"status": "ok" if healthy else "unavailable", "checks": results},
            status=200 if healthy else 503,
        )
