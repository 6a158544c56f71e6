from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiRequest,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from accounts.access import request_project
from accounts.models import APIKey, Scope
from llmops.api_exports import (
    EXPORT_RENDERERS,
    FORMAT_PARAMETER,
    JSONErrorsMixin,
    export_format,
    export_response,
    export_responses,
)
from llmops.schema import ErrorSerializer
from runs import batch_files, batch_selectors, batch_services
from runs.api.batch_serializers import (
    BatchCreatedSerializer,
    BatchCreateSerializer,
    BatchFilterSerializer,
    BatchResultSerializer,
    BatchSerializer,
    BatchUploadSerializer,
)
from runs.models import Batch


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body is too large."
    default_code = "payload_too_large"


def _check_upload_size(request: Request) -> None:
    """413 before the body is read: multipart files are not bounded by DATA_UPLOAD_MAX_MEMORY_SIZE."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.BATCH_UPLOAD_MAX_BYTES:
        raise PayloadTooLarge(f"The upload is larger than {settings.BATCH_UPLOAD_MAX_BYTES} bytes.")


@extend_schema_view(
    list=extend_schema(
        summary="List your batches, newest first, with their progress", parameters=[BatchFilterSerializer]
    ),
    retrieve=extend_schema(summary="Get a batch and its progress (counts by status, tokens, cost)"),
    create=extend_schema(
        summary="Create a batch: one run per item, at most `concurrency` at once",
        description=(
            "Items inline as JSON, or a JSON Lines / CSV file as multipart/form-data (`file`). Every row is "
            "validated first: a bad row is reported by line in `error.fields` (`items.17.variables.name`) and "
            "nothing is created, unless `skip_invalid` is true."
        ),
        request={
            "application/json": OpenApiRequest(
                BatchCreateSerializer,
                examples=[
                    OpenApiExample(
                        "Inline items",
                        value={
                            "prompt": "greet",
                            "label": "production",
                            "items": [
                                {"variables": {"name": "Ada"}, "key": "ada"},
                                {"variables": {"name": "Grace"}, "key": "grace"},
                            ],
                            "concurrency": 2,
                            "params": {"max_tokens": 64},
                            "name": "greetings",
                            "metadata": {"team": "docs"},
                        },
                    )
                ],
            ),
            "multipart/form-data": OpenApiRequest(
                BatchUploadSerializer,
                # JSON text in the form: sent as parts of type application/json.
                encoding={name: {"contentType": "application/json"} for name in ("params", "metadata")},
                examples=[
                    OpenApiExample(
                        "A CSV file",
                        value={
                            "prompt": "greet",
                            "version": 1,
                            "file": "name\nAda\nGrace\n",
                            "format": "csv",
                            "metadata": {"team": "docs"},
                        },
                    )
                ],
            ),
        },
        responses={201: BatchCreatedSerializer},
    ),
)
@extend_schema(tags=["batches"])
class BatchViewSet(JSONErrorsMixin, viewsets.GenericViewSet):
    serializer_class = BatchSerializer
    # The API's JSON parser (settings imports it), plus multipart for file uploads.
    parser_classes = [*api_settings.DEFAULT_PARSER_CLASSES, MultiPartParser]  # type: ignore[list-item]
    required_scopes = {
        "list": Scope.RUNS_READ,
        "retrieve": Scope.RUNS_READ,
        "results": Scope.RUNS_READ,
        "create": Scope.RUNS_EXECUTE,
        "cancel": Scope.RUNS_EXECUTE,
    }
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Batch]:
        if getattr(self, "swagger_fake_view", False):
            return Batch.objects.none()
        # A plain dict, not the QueryDict: DRF would read a blank `?status=` as absent instead of invalid.
        filters = BatchFilterSerializer(data=self.request.query_params.dict())
        filters.is_valid(raise_exception=True)
        return batch_selectors.batch_list(project=request_project(self.request), **filters.validated_data)

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(BatchSerializer(page, many=True, context={"request": request}).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        batch = batch_selectors.batch_get(project=request_project(request), batch_id=pk)
        return Response(BatchSerializer(batch, context={"request": request}).data)

    def create(self, request: Request) -> Response:
        _check_upload_size(request)
        rows: Any
        if request.content_type.startswith("multipart/form-data"):
            upload_form = BatchUploadSerializer(data=request.data)
            upload_form.is_valid(raise_exception=True)
            options = dict(upload_form.validated_data)
            upload = options.pop("file")
            if upload.size > settings.BATCH_UPLOAD_MAX_BYTES:
                raise PayloadTooLarge(f"The upload is larger than {settings.BATCH_UPLOAD_MAX_BYTES} bytes.")
            file_format = options.pop("format", None) or ("csv" if upload.name.lower().endswith(".csv") else "jsonl")
            lines = batch_files.text_lines(upload)  # line by line from memory or the spooled temporary file
            rows = batch_files.rows_from_csv(lines) if file_format == "csv" else batch_files.rows_from_jsonl(lines)
        else:
            inline = BatchCreateSerializer(data=request.data)
            inline.is_valid(raise_exception=True)
            options = dict(inline.validated_data)
            rows = batch_files.rows_from_items(options.pop("items"))
        batch, skipped = batch_services.batch_create(
            project=request_project(request),
            created_by=request.user,  # type: ignore[arg-type]
            api_key=request.auth if isinstance(request.auth, APIKey) else None,
            items=rows,
            **options,
        )
        created = batch_selectors.batch_get(project=request_project(request), batch_id=batch.pk)
        created.skipped = skipped  # type: ignore[attr-defined]
        body = BatchCreatedSerializer(created, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})

    @extend_schema(
        summary="Cancel a batch: pending items and queued runs never run; running ones finish",
        request=None,
        responses={200: BatchSerializer, 409: OpenApiResponse(ErrorSerializer, description="Already finished.")},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        batch = batch_selectors.batch_get(project=request_project(request), batch_id=pk)
        batch_services.batch_cancel(batch=batch)
        batch = batch_selectors.batch_get(project=request_project(request), batch_id=pk)
        return Response(BatchSerializer(batch, context={"request": request}).data)

    @extend_schema(
        summary="Export the batch's results, streamed, one item per line in line order",
        parameters=[FORMAT_PARAMETER],
        responses=export_responses(
            line=BatchResultSerializer,
            what="item",
            csv_header=batch_files.CSV_COLUMNS,
            csv_note="`variables` is JSON text.",
            not_found="Not found, owned by someone else, or an unknown `format`.",
        ),
    )
    @action(detail=True, methods=["get"], renderer_classes=EXPORT_RENDERERS)
    def results(self, request: Request, pk: str) -> StreamingHttpResponse:
        format = export_format(request)
        batch = batch_selectors.batch_get(project=request_project(request), batch_id=pk)
        stream = batch_files.results_csv(batch) if format == "csv" else batch_files.results_jsonl(batch)
        return export_response(stream, format=format, filename=f"batch-{batch.pk}")
