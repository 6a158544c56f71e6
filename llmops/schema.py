"""OpenAPI generation: every operation documents the error responses it can return and the key scope it needs."""

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
    "403": "Authenticated but not allowed (`insufficient_scope`: the API key lacks the scope this operation needs).",
    "404": "Not found, or owned by someone else.",
    "405": "Method not allowed.",
    "406": "Not acceptable.",
    "413": "Request body too large.",
    "415": "Unsupported media type.",
    "429": "Rate limit exceeded (`rate_limited`); retry after `Retry-After` seconds.",
    "500": "Internal server error.",
    "503": "A dependency is unavailable (`broker_unavailable`: Redis, the queue and cache; `database_unavailable`); "
    "nothing was done. Retry after `Retry-After` seconds.",
}
_BODY_ONLY = {"413", "415"}
# Set on every response of a rate limited operation (all but the public health check) while limits are on.
_RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": "Requests allowed per window for this API key (run creations for run creation), "
    "or per IP address without a key.",
    "X-RateLimit-Remaining": "Requests left in the current window.",
    "X-RateLimit-Reset": "Seconds until the current window ends.",
}
_AUTH_ONLY = {"401", "403"}


class AutoSchema(SpectacularAutoSchema):
    def _required_scope(self) -> str | None:
        """The API key scope this operation needs, as the view's scope-checking permission reports it
        (duck-typed: llmops imports no app)."""
        for permission in self.view.get_permissions():
            required_scope = getattr(permission, "required_scope", None)
            if required_scope is not None:
                return required_scope(self.view, self.method)  # type: ignore[no-any-return]
        return None

    def get_operation(self, *args: Any, **kwargs: Any) -> Any:
        operation = super().get_operation(*args, **kwargs)
        scope = self._required_scope()
        if operation is not None and scope:
            note = f"Requires scope: {scope}."
            description = operation.get("description")
            operation["description"] = f"{description}\n\n{note}" if description else note
        return operation

    def _get_response_headers_for_code(self, status_code: Any, direction: Any = "response") -> Any:
        headers = super()._get_response_headers_for_code(status_code, direction)
        if any(isinstance(p, permissions.AllowAny) for p in self.view.get_permissions()):
            return headers
        described = dict(_RATE_LIMIT_HEADERS)
        if str(status_code) == "429":
            described["Retry-After"] = "Whole seconds until the current window ends and requests are admitted again."
        if str(status_code) == "503":
            described["Retry-After"] = "Whole seconds to wait before retrying."
        documented = {name: {"schema": {"type": "integer"}, "description": text} for name, text in described.items()}
        return documented | headers

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        public = any(isinstance(p, permissions.AllowAny) for p in self.view.get_permissions())
        scope = self._required_scope()
        for code, description in _ERRORS.items():
            if code in responses:
                continue
            if code in _BODY_ONLY and self.method not in ("POST", "PUT", "PATCH"):
                continue
            if code in _AUTH_ONLY and public:
                continue
            if code == "403" and scope:
                description = f"`insufficient_scope`: the API key lacks the scope {scope}."
            responses[code] = self._get_response_for_code(
                OpenApiResponse(ErrorSerializer, description=description), code
            )
        # gunicorn itself refuses request lines over its limit (4094 bytes) before Django sees them,
        # with a plain HTML page; documented as such so clients (and the fuzzer) know to expect it.
        responses.setdefault(
            "414",
            {
                "description": "Request line too long (URL and query string), refused by the HTTP server.",
                "content": {"text/html": {"schema": {"type": "string"}}},
            },
        )
        return responses
