"""Assertions shared by every app's tests (imported, not collected)."""

from typing import Any

ERROR_KEYS = {"code", "message", "fields", "request_id"}


def assert_error(
    response: Any, status: int, code: str | None = None, *, fields: set[str] | None = None
) -> dict[str, Any]:
    """Checks the one JSON error shape and returns its `error` object.

    `fields`, when given, must be exactly the set of field names the error lists.
    """
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == ERROR_KEYS, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], dict)
    assert error["request_id"] not in ("", "-")
    assert error["request_id"] == response["X-Request-ID"]
    if code is not None:
        assert error["code"] == code, error
    if fields is not None:
        assert set(error["fields"]) == fields, error["fields"]
    return error
