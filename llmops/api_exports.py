"""The API's streamed downloads (a batch's results, a dataset version's examples): `?format=` or
Accept picks JSON Lines or CSV, the body is streamed as it is read, and errors stay JSON whatever
format was asked for. The views declare `renderer_classes=EXPORT_RENDERERS` on their action, mix in
JSONErrorsMixin, and document the action with `export_responses`."""

from collections.abc import Iterator
from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import exceptions, renderers, views
from rest_framework.request import Request
from rest_framework.response import Response

from llmops.schema import ErrorSerializer

FORMAT_PARAMETER = OpenApiParameter(
    "format", OpenApiTypes.STR, enum=["jsonl", "csv"], description="Default `jsonl` (or by Accept)."
)


class _ExportRenderer(renderers.BaseRenderer):
    """Selects an export format by `?format=` or Accept; the export itself is a streaming response,
    so this only ever renders an error body, as JSON."""

    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return renderers.JSONRenderer().render(data)


class JSONLinesRenderer(_ExportRenderer):
    media_type = "application/x-ndjson"
    format = "jsonl"


class CSVRenderer(_ExportRenderer):
    media_type = "text/csv"
    format = "csv"


EXPORT_RENDERERS = [JSONLinesRenderer, CSVRenderer]


class JSONErrorsMixin(views.APIView):
    # Errors are JSON whatever export format was asked for. (A comment, not a docstring: a view's
    # docstring is its description in the OpenAPI schema.)

    def handle_exception(self, exc: Exception) -> Response:
        self.request.accepted_renderer = renderers.JSONRenderer()
        self.request.accepted_media_type = "application/json"
        return super().handle_exception(exc)


def export_format(request: Request) -> str:
    """`csv` or `jsonl`, as negotiated; a blank `?format=` (which DRF reads as none given) is a 404 like
    any unknown format."""
    if request.query_params.get("format") == "":
        raise exceptions.NotFound("Unknown format; give jsonl or csv.")
    return "csv" if request.accepted_renderer.format == "csv" else "jsonl"


def export_response(stream: Iterator[bytes], *, format: str, filename: str) -> StreamingHttpResponse:
    """The streamed download of `stream` in `format`, saved as `<filename>.<format>`."""
    content_type = "text/csv; charset=utf-8" if format == "csv" else "application/x-ndjson"
    response = StreamingHttpResponse(stream, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}.{format}"'
    return response


def export_responses(*, line: Any, what: str, csv_header: list[str], csv_note: str, not_found: str) -> dict[Any, Any]:
    """The OpenAPI responses of an export: a JSON Lines line of `line`'s shape, or CSV, per `what`
    (item, example...), and the JSON errors."""
    return {
        (200, "application/x-ndjson"): OpenApiResponse(
            line, description=f"JSON Lines: one such object per {what}, streamed."
        ),
        (200, "text/csv"): OpenApiResponse(
            OpenApiTypes.STR,
            description=f"CSV, streamed: a header row ({', '.join(csv_header)}) then one row per {what}; {csv_note}",
        ),
        # Errors stay JSON whatever format was asked for (JSONErrorsMixin).
        **{
            (code, "application/json"): OpenApiResponse(ErrorSerializer, description=text)
            for code, text in (
                (400, "Invalid query parameters."),
                (401, "Missing, unknown, revoked or expired API key."),
                (403, "Authenticated but not allowed."),
                (404, not_found),
                (405, "Method not allowed."),
                (406, "Not acceptable."),
                (429, "Too many requests."),
                (500, "Internal server error."),
            )
        },
    }
