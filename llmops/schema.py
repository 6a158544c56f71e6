"""OpenAPI generation: every operation documents the error responses it can return."""

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions, serializers


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable error code, e.g. `validation_error`.")
    message = serializers.CharField()
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Offending field names (dotted for nested fields) and their problems.",
    )
    request_id = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


_ERRORS = {
    "400": "Invalid input; `error.fields` names each offending field.",
    "401": "Missing, unknown, revoked or expired API key.",
    "403": "Authenticated but not allowed.",
    "404": "Not found, or owned by someone else.",
    "405": "Method not allowed.",
    "406": "Not acceptable.",
    "413": "Request body too large.",
    "415": "Unsupported media type.",
    "429": "Too many requests.",
    "500": "Internal server error.",
}
_BODY_ONLY = {"413", "415"}
_AUTH_ONLY = {"401", "403"}


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        public = any(isinstance(p, permissions.AllowAny) for p in self.view.get_permissions())
        for code, description in _ERRORS.items():
            if code in responses:
                continue
            if code in _BODY_ONLY and self.method not in ("POST", "PUT", "PATCH"):
                continue
            if code in _AUTH_ONLY and public:
                continue
            responses[code] = self._get_response_for_code(
                OpenApiResponse(ErrorSerializer, description=description), code
            )
        return responses
