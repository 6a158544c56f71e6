"""Request bodies: the API's JSON parser, and chunked bodies made visible to Django under WSGI.

Django refuses a body over DATA_UPLOAD_MAX_MEMORY_SIZE (413) before any parsing; what is left for
the parser is a body of bounded size whose *content* can still break the server. Each check below
turns such content into a 400 `parse_error` instead of a 500 further down.
"""

import io
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError
from rest_framework.utils import json

# A JSON escape that decodes to a UTF-16 surrogate; only then can a decoded string hold a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_NUL_ESCAPE = "\\u0000"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _finite_float(text: str) -> float:
    # "1e999" is valid JSON but parses to inf, which neither the JSON renderer nor jsonb can store.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"Number out of range: {text[:20]}")
    return value


class JSONRejected(ValueError):
    """Valid JSON that the API refuses: too deep, or holding a value nothing downstream can store."""


def _bad_string(value: str) -> str | None:
    if "\x00" in value:
        # PostgreSQL stores no NUL in text or jsonb; DRF's CharField refuses it too.
        return "Strings must not contain NUL (\\u0000)"
    if _LONE_SURROGATE.search(value):
        # A lone surrogate cannot be encoded as UTF-8: not by the database, not by the renderer.
        return "Strings must not contain unpaired UTF-16 surrogates"
    return None


def _check(data: Any, *, max_depth: int, check_depth: bool, check_strings: bool) -> None:
    """Raises JSONRejected for nesting deeper than max_depth or a bad string. Iterative, so a deep
    document cannot exhaust the stack here either; only containers go on the stack."""
    if check_strings and isinstance(data, str) and (problem := _bad_string(data)):
        raise JSONRejected(problem)
    stack: list[tuple[Any, int]] = [(data, 1)] if isinstance(data, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if check_depth and depth > max_depth:
            raise JSONRejected(f"JSON is nested too deeply (more than {max_depth} levels)")
        children: Iterable[Any] = node
        if isinstance(node, dict):
            children = node.values()
            if check_strings:
                for key in node:
                    if problem := _bad_string(key):
                        raise JSONRejected(problem)
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
            elif check_strings and isinstance(child, str) and (problem := _bad_string(child)):
                raise JSONRejected(problem)


def json_loads(text: str, *, strict: bool = True) -> Any:
    """json.loads with the API's bounds; raises ValueError (JSONRejected for a refused value).

    - At most settings.JSON_MAX_DEPTH levels of nesting: deeper documents made the decoder, the
      serializers or the renderer recurse until RecursionError, a 500.
    - No NaN/Infinity (unless not `strict`), no number that overflows to infinity, no NUL and no
      lone surrogate in strings: all parse, and all fail later when stored or rendered.
    """
    parse_constant: Callable[[str], Any] | None = json.strict_constant if strict else None
    try:
        data = json.loads(text, parse_constant=parse_constant, parse_float=_finite_float)
    except RecursionError:
        raise JSONRejected("JSON is nested too deeply") from None
    max_depth = settings.JSON_MAX_DEPTH
    # Cheap bounds first: the bracket count bounds the depth, and without one of these escapes
    # no decoded string can hold NUL or a lone surrogate. Most documents skip the walk entirely.
    check_depth = text.count("[") + text.count("{") > max_depth
    check_strings = _NUL_ESCAPE in text or _SURROGATE_ESCAPE.search(text) is not None
    if check_depth or check_strings:
        _check(data, max_depth=max_depth, check_depth=check_depth, check_strings=check_strings)
    return data


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, bounded (the API's only parser, REST_FRAMEWORK DEFAULT_PARSER_CLASSES):
    UTF-8 only (RFC 8259), whatever charset the Content-Type names, then `json_loads`."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raw = stream.read() if stream is not None else b""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"JSON parse error - the body is not valid UTF-8 (byte {exc.start}).") from None
        try:
            return json_loads(text, strict=self.strict)
        except JSONRejected as exc:
            raise ParseError(str(exc)) from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


class ChunkedBodyMiddleware:
    """WSGI middleware: a chunked request body (no Content-Length) made readable by Django.

    Django reads exactly CONTENT_LENGTH bytes of a request, so without that header it sees an
    empty body: a chunked JSON request would be parsed as `{}`, and an oversized one would never
    get its 413. When the server says its input ends with the body (`wsgi.input_terminated`, set
    by gunicorn), this reads at most DATA_UPLOAD_MAX_MEMORY_SIZE + 1 bytes and sets
    CONTENT_LENGTH to what it read, so Django's own size check then answers 413 as usual.

    Multipart bodies are left alone: their files are bounded by the views, not by that setting,
    and a body cut at it would reach the parser silently truncated.
    """

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if (
            not environ.get("CONTENT_LENGTH")
            and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
            and environ.get("wsgi.input_terminated")
            and not environ.get("CONTENT_TYPE", "").lower().startswith("multipart/")
        ):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            body = environ["wsgi.input"].read() if limit is None else environ["wsgi.input"].read(limit + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)
