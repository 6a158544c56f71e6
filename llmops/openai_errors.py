"""The OpenAI error shape, for the OpenAI-compatible paths (`/v1/`, the gateway app):

    {"error": {"message": "...", "type": "invalid_request_error", "param": "messages.0.role",
               "code": "validation_error", "fields": {"messages.0.role": ["..."]}, "request_id": "..."}}

It is the platform's error (llmops.errors.error_body) said the way OpenAI's SDKs read it: the status
code picks the SDK's exception class (400 BadRequestError, 401 AuthenticationError, 403
PermissionDeniedError, 404 NotFoundError, 429 RateLimitError, 5xx InternalServerError), `type` is
OpenAI's category, `param` the first field at fault, `code` the platform's code, and the message
names every field problem."""

from typing import Any

OPENAI_PREFIX = "/v1/"

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


def is_openai_path(path: str) -> bool:
    return path.startswith(OPENAI_PREFIX)


def openai_error_type(status: int) -> str:
    return _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def openai_error_body(platform_body: dict[str, Any], status: int) -> dict[str, Any]:
    """The OpenAI form of a platform error body (`error_body`)."""
    error = platform_body.get("error", {})
    fields: dict[str, list[str]] = error.get("fields") or {}
    message = str(error.get("message", ""))
    if fields:
        details = "; ".join(f"{name}: {' '.join(problems)}" for name, problems in fields.items())
        message = f"{message} {details}" if message else details
    return {
        "error": {
            "message": message,
            "type": openai_error_type(status),
            "param": next(iter(fields), None),
            "code": error.get("code"),
            # Not OpenAI's (its SDKs keep unknown keys): every field at fault, as the platform's errors give it.
            "fields": fields,
            "request_id": error.get("request_id"),
        }
    }
