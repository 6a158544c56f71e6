"""Cross-cutting HTTP middleware and the request id's lifecycle."""

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.core.signals import request_finished, request_started
from django.http import HttpRequest, HttpResponse

from llmops.request_context import current_request_id, request_id_var

logger = logging.getLogger("llmops.request")

# An incoming id is kept only when it is short and plain, so a client cannot inject
# control characters or megabytes into our logs.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REQUEST_ID_HEADER = "X-Request-ID"


def _begin_request(sender: Any, environ: dict[str, Any] | None = None, **kwargs: Any) -> None:
    # Set on request_started rather than in the middleware, so that Django's own log lines
    # written after the middleware returns ("Bad Request: ...") carry the id too.
    incoming = (environ or {}).get("HTTP_X_REQUEST_ID", "")
    request_id_var.set(incoming if _SANE_REQUEST_ID.match(incoming) else uuid.uuid4().hex)


def _end_request(sender: Any, **kwargs: Any) -> None:
    request_id_var.set("-")


request_started.connect(_begin_request, dispatch_uid="llmops.request_id.begin")
request_finished.connect(_end_request, dispatch_uid="llmops.request_id.end")


class RequestIDMiddleware:
    """Returns the request id in X-Request-ID and logs one line per request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = current_request_id()
        if request_id == "-":  # no request_started signal (e.g. a RequestFactory in tests)
            incoming = request.headers.get(REQUEST_ID_HEADER, "")
            request_id = incoming if _SANE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
            request_id_var.set(request_id)
        request.request_id = request_id  # type: ignore[attr-defined]
        started = time.perf_counter()
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        user = getattr(request, "user", None)
        logger.info(
            "request finished",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "user_id": str(user.pk) if user is not None and user.is_authenticated else None,
            },
        )
        return response
