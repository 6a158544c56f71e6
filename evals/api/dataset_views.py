from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
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

from accounts.access import request_project
from accounts.models import Scope
from evals import dataset_files, dataset_selectors, dataset_services
from evals.api.dataset_serializers import (
    DatasetCreateSerializer,
    DatasetImportSerializer,
    DatasetSerializer,
    DatasetUpdateSerializer,
    DatasetVersionSerializer,
    ExampleCreatedSerializer,
    ExampleFromRunSerializer,
    ExamplesAppendSerializer,
    ExampleSerializer,
    ExamplesRemoveSerializer,
    ExportLineSerializer,
    VersionQuerySerializer,
)
from evals.models import Dataset, Example
from llmops.api_exports import (
    EXPORT_RENDERERS,
    FORMAT_PARAMETER,
    JSONErrorsMixin,
    export_format,
    export_response,
    export_responses,
)
from llmops.schema import ErrorSerializer
from runs.api.batch_views import PayloadTooLarge

DATASET_NAME = OpenApiParameter(
    "name", OpenApiTypes.STR, OpenApiParameter.PATH, description="The dataset's name or its id."
)
NAME_TAKEN = OpenApiResponse(ErrorSerializer, description="You have a dataset of this name (`name_taken`).")
VERSION_MISSING = OpenApiResponse(
    ErrorSerializer, description="No such dataset (or in another project), or no such `version` of it."
)
_EXAMPLE = {
    "variables": {"question": "What is the capital of France?"},
    "expected_output": "Paris",
    "reference": "Any answer naming Paris is right.",
    "tags": ["geography"],
}


def _upload_size_check(request: Request) -> None:
    """413 before the body is read (the batches' upload limit): multipart files are not bounded by
    DATA_UPLOAD_MAX_MEMORY_SIZE."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.BATCH_UPLOAD_MAX_BYTES:
        raise PayloadTooLarge(f"The upload is larger than {settings.BATCH_UPLOAD_MAX_BYTES} bytes.")


def _version_query(request: Request) -> int | None:
    # A plain dict, not the QueryDict: DRF would read a blank `?version=` as absent instead of invalid.
    query = VersionQuerySerializer(data=request.query_params.dict())
    query.is_valid(raise_exception=True)
    number: int | None = query.validated_data.get("version")
    return number


@extend_schema_view(
    list=extend_schema(summary="List your datasets"),
    create=extend_schema(
        summary="Create an empty dataset (append examples to make its version 1)",
        request=DatasetCreateSerializer,
        examples=[
            OpenApiExample(
                "A dataset", request_only=True, value={"name": "capitals", "description": "Capitals of countries."}
            )
        ],
        responses={201: DatasetSerializer, 409: NAME_TAKEN},
    ),
    retrieve=extend_schema(summary="Get a dataset by name or id", parameters=[DATASET_NAME]),
    partial_update=extend_schema(
        summary="Update a dataset's description",
        request=DatasetUpdateSerializer,
        parameters=[DATASET_NAME],
        examples=[OpenApiExample("Description", request_only=True, value={"description": "Capitals, checked."})],
    ),
    destroy=extend_schema(
        summary="Delete a dataset, its versions and examples",
        parameters=[DATASET_NAME],
        responses={
            204: None,
            409: OpenApiResponse(
                ErrorSerializer, description="An experiment or a label gate uses it (`dataset_in_use`)."
            ),
        },
    ),
)
@extend_schema(tags=["datasets"])
class DatasetViewSet(JSONErrorsMixin, viewsets.GenericViewSet):
    """Datasets: numbered, immutable versions of examples. Every append or removal is a new version."""

    serializer_class = DatasetSerializer
    required_scopes = {
        "list": Scope.EVALS_READ,
        "retrieve": Scope.EVALS_READ,
        "versions": Scope.EVALS_READ,
        "examples": Scope.EVALS_READ,
        "export": Scope.EVALS_READ,
        "create": Scope.EVALS_WRITE,
        "partial_update": Scope.EVALS_WRITE,
        "destroy": Scope.EVALS_WRITE,
        "append_examples": Scope.EVALS_WRITE,
        "remove_examples": Scope.EVALS_WRITE,
        "from_run": Scope.EVALS_WRITE,
        "import_file": Scope.EVALS_WRITE,
    }
    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Dataset]:
        if getattr(self, "swagger_fake_view", False):
            return Dataset.objects.none()
        return dataset_selectors.dataset_list(project=request_project(self.request))

    def get_object(self) -> Dataset:
        return dataset_selectors.dataset_get(project=request_project(self.request), ref=self.kwargs["name"])

    def _fresh(self, dataset: Dataset) -> Dataset:
        return dataset_selectors.dataset_get(project=request_project(self.request), ref=str(dataset.pk))

    def _version_created(self, version: Any) -> Response:
        return Response(DatasetVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(DatasetSerializer(page, many=True, context={"request": request}).data)

    def create(self, request: Request) -> Response:
        serializer = DatasetCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        dataset = dataset_services.dataset_create(
            project=request_project(request),
            created_by=request.user,  # type: ignore[arg-type]
            **serializer.validated_data,
        )
        body = DatasetSerializer(self._fresh(dataset), context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})

    def retrieve(self, request: Request, name: str) -> Response:
        return Response(DatasetSerializer(self.get_object(), context={"request": request}).data)

    def partial_update(self, request: Request, name: str) -> Response:
        dataset = self.get_object()
        serializer = DatasetUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data:  # PATCH {} changes nothing
            dataset_services.dataset_update(
                project=request_project(request), dataset=dataset, **serializer.validated_data
            )
        return Response(DatasetSerializer(dataset, context={"request": request}).data)

    def destroy(self, request: Request, name: str) -> Response:
        dataset_services.dataset_delete(project=request_project(request), dataset=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="List a dataset's versions, newest first",
        parameters=[DATASET_NAME],
        responses={200: DatasetVersionSerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def versions(self, request: Request, name: str) -> Response:
        dataset = self.get_object()
        page = self.paginate_queryset(dataset_selectors.dataset_version_list(dataset=dataset))
        return self.get_paginated_response(DatasetVersionSerializer(page, many=True).data)

    @extend_schema(
        summary="List the examples of a dataset version, in order",
        description="`?version=N`, default the latest. A dataset with no version yet has no examples.",
        parameters=[DATASET_NAME, VersionQuerySerializer],
        responses={200: ExampleSerializer(many=True), 404: VERSION_MISSING},
    )
    @action(detail=True, methods=["get"])
    def examples(self, request: Request, name: str) -> Response:
        dataset = self.get_object()
        number = _version_query(request)
        examples: QuerySet[Example]
        if number is None and dataset.latest_version_number == 0:
            examples = Example.objects.none()
        else:
            version = dataset_selectors.dataset_version_get(dataset=dataset, number=number)
            examples = dataset_selectors.example_list(version=version)
        page = self.paginate_queryset(examples)
        return self.get_paginated_response(ExampleSerializer(page, many=True).data)

    @extend_schema(
        summary="Append examples: one new version",
        description=(
            "Every example is checked first: a bad one is reported by index in `error.fields` "
            "(`examples.3.tags`) and nothing is added."
        ),
        parameters=[DATASET_NAME],
        request=ExamplesAppendSerializer,
        examples=[OpenApiExample("Two examples", request_only=True, value={"examples": [_EXAMPLE, {**_EXAMPLE}]})],
        responses={201: DatasetVersionSerializer},
    )
    @examples.mapping.post
    def append_examples(self, request: Request, name: str) -> Response:
        dataset = self.get_object()
        serializer = ExamplesAppendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = dataset_services.examples_append(
            project=request_project(request),
            dataset=dataset,
            examples=dataset_files.rows_from_items(serializer.validated_data["examples"]),
            created_by=request.user,  # type: ignore[arg-type]
            note=serializer.validated_data["note"],
        )
        return self._version_created(version)

    @extend_schema(
        summary="Remove examples: one new version without them (earlier versions keep them)",
        parameters=[DATASET_NAME],
        request=ExamplesRemoveSerializer,
        examples=[
            OpenApiExample(
                "Two examples",
                request_only=True,
                value={
                    "ids": ["6f1c1d5e-8d4b-4c8e-9a53-0b8f2a7c1e10", "0a9e3b2c-5d6f-4e1a-8b7c-9d0e1f2a3b4c"],
                    "note": "Ambiguous questions",
                },
            )
        ],
        responses={201: DatasetVersionSerializer},
    )
    @action(detail=True, methods=["post"], url_path="examples/remove")
    def remove_examples(self, request: Request, name: str) -> Response:
        dataset = self.get_object()
        serializer = ExamplesRemoveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = dataset_services.examples_remove(
            project=request_project(request),
            dataset=dataset,
            ids=[str(pk) for pk in serializer.validated_data["ids"]],
            created_by=request.user,  # type: ignore[arg-type]
            note=serializer.validated_data["note"],
        )
        return self._version_created(version)

    @extend_schema(
        summary="Save a run as an example: its variables, and its output as the expected output",
        description="The run must be this project's and succeeded (else a 400 naming `run`). One new version.",
        parameters=[DATASET_NAME],
        request=ExampleFromRunSerializer,
        examples=[
            OpenApiExample(
                "A run, its output corrected",
                request_only=True,
                value={
                    "run": "3b5d7f9a-1c2e-4a6b-8d0f-2e4a6c8e0b1d",
                    "expected_output": "Paris.",
                    "tags": ["from-production"],
                },
            )
        ],
        responses={201: ExampleCreatedSerializer},
    )
    @action(detail=True, methods=["post"], url_path="examples/from-run")
    def from_run(self, request: Request, name: str) -> Response:
        dataset = self.get_object()
        serializer = ExampleFromRunSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version, example = dataset_services.example_from_run(
            project=request_project(request),
            dataset=dataset,
            created_by=request.user,  # type: ignore[arg-type]
            **serializer.validated_data,
        )
        body = ExampleCreatedSerializer({"version": version, "example": example}).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Import examples from a JSON Lines or CSV file: one new version",
        description=(
            "Streamed: read once, never held whole. Every row is checked first: bad rows are reported by line "
            "(`examples.17.variables`, the first ones) and nothing is added."
        ),
        parameters=[DATASET_NAME],
        request={
            "multipart/form-data": OpenApiRequest(
                DatasetImportSerializer,
                examples=[
                    OpenApiExample(
                        "A CSV file",
                        value={
                            "file": "var.question,expected_output,tags\nCapital of France?,Paris,geo\n",
                            "format": "csv",
                        },
                    )
                ],
            )
        },
        responses={201: DatasetVersionSerializer},
    )
    # Multipart for the file only: the other writes take JSON (the API's default parser).
    @action(detail=True, methods=["post"], url_path="import", parser_classes=[MultiPartParser])
    def import_file(self, request: Request, name: str) -> Response:
        _upload_size_check(request)
        dataset = self.get_object()
        if not request.content_type.startswith("multipart/form-data"):
            raise exceptions.UnsupportedMediaType(request.content_type)
        form = DatasetImportSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        upload = form.validated_data["file"]
        if upload.size > settings.BATCH_UPLOAD_MAX_BYTES:
            raise PayloadTooLarge(f"The upload is larger than {settings.BATCH_UPLOAD_MAX_BYTES} bytes.")
        file_format = form.validated_data.get("format") or ("csv" if upload.name.lower().endswith(".csv") else "jsonl")
        lines = dataset_files.text_lines(upload)  # line by line from memory or the spooled temporary file
        rows = dataset_files.rows_from_csv(lines) if file_format == "csv" else dataset_files.rows_from_jsonl(lines)
        version = dataset_services.examples_append(
            project=request_project(request),
            dataset=dataset,
            examples=rows,
            created_by=request.user,  # type: ignore[arg-type]
            note=form.validated_data["note"] or f"Imported from {upload.name}"[:500],
        )
        return self._version_created(version)

    @extend_schema(
        summary="Export a dataset version, streamed, one example per line in order",
        parameters=[DATASET_NAME, VersionQuerySerializer, FORMAT_PARAMETER],
        responses=export_responses(
            line=ExportLineSerializer,
            what="example",
            csv_header=dataset_files.CSV_COLUMNS,
            csv_note="`variables` and `tags` are JSON text.",
            not_found="Not found, owned by someone else, no such `version`, or an unknown `format`.",
        ),
    )
    @action(detail=True, methods=["get"], renderer_classes=EXPORT_RENDERERS)
    def export(self, request: Request, name: str) -> StreamingHttpResponse:
        format = export_format(request)
        dataset = self.get_object()
        version = dataset_selectors.dataset_version_get(dataset=dataset, number=_version_query(request))
        stream = dataset_files.export_csv(version) if format == "csv" else dataset_files.export_jsonl(version)
        return export_response(stream, format=format, filename=f"{dataset.name}-v{version.number}")
