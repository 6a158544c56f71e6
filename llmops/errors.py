"""One JSON error shape for the whole API.

    {"error": {"code": "...", "message": "...", "fields": {"name": ["problem", ...]}, "request_id": "..."}}

Services raise `DomainError` subclasses (no HTTP or DRF import needed); `llmops.exception_handler`
turns them, DRF's own exceptions and Django-level failures into that shape.
"""

from http import HTTPStatus
from typing import Any

from llmops.request_context import current_request_id

FieldErrors = dict[str, list[str]]


class DomainError(Exception):
    """A business-rule violation a client can fix; carries its HTTP status, and for a limit that
    lifts by itself the seconds until it does (`retry_after`, sent as the Retry-After header)."""

    status_code = HTTPStatus.BAD_REQUEST
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        fields: FieldErrors | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        self.retry_after = retry_after
        if code:
            self.code = code


class ValidationFailed(DomainError):
    code = "validation_error"


class NotFound(DomainError):
    status_code = HTTPStatus.NOT_FOUND
    code = "not_found"


class Conflict(DomainError):
    status_code = HTTPStatus.CONFLICT
    code = "conflict"


class ServiceUnavailable(DomainError):
    """A dependency (the database, Redis as broker or cache) is unreachable; nothing was done."""

    status_code = HTTPStatus.SERVICE_UNAVAILABLE
    code = "service_unavailable"


def error_body(code: str, message: str, fields: FieldErrors | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "fields": fields or {},
            "request_id": current_request_id(),
        }
    }
