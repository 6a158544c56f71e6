from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import request_project
from accounts.models import APIKey, Scope
from llmops.schema import NON_BLANK, ErrorSerializer
from runs import selectors, services
from runs.api.serializers import (
    RunCreateQuerySerializer,
    RunCreateSerializer,
    RunFilterSerializer,
    SeedRunCreateSerializer,
)
from runs.models import Run
from runs.serializers import RunSerializer

MAX_IDEMPOTENCY_KEY = 200
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY, "pattern": NON_BLANK},
    OpenApiParameter.HEADER,
    description="Same key and body from the same project returns the same run; a different body is 409.",
)
RUN_EXAMPLES = [
    OpenApiExample(
        "Production version (else the latest)",
        request_only=True,
        value={"prompt": "greet", "variables": {"name": "Ada"}, "metadata": {"ticket": "T-123"}},
    ),
    OpenApiExample(
        "A version, with overrides",
        request_only=True,
        value={
            "prompt": "greet",
            "version": 1,
            "variables": {"name": "Ada"},
            "params": {"max_tokens": 64, "temperature": 0.2},
            "model": "local/smollm2",
        },
    ),
    OpenApiExample("A label", request_only=True, value={"prompt": "greet", "label": "staging", "variables": {}}),
]
CREATE_RESPONSES = {
    200: OpenApiResponse(
        RunSerializer, description="Finished within `wait`, or an idempotent replay of a finished run."
    ),
    202: OpenApiResponse(RunSerializer, description="Queued or running; poll its `url`."),
    402: OpenApiResponse(
        ErrorSerializer,
        description="Refused by a budget; no run is created. `budget_exceeded`: the run's maximum cost "
        "(input estimate x input price + max_tokens x output price) does not fit in what the user's or the "
        "key's budget has left. `price_unknown`: a budget applies and the model has no known price.",
    ),
    409: OpenApiResponse(ErrorSerializer, description="Idempotency-Key reused with a different body."),
    429: OpenApiResponse(
        ErrorSerializer,
        description="Too many requests. `tokens_rate_limited`: the API key used its tokens for this minute; "
        "the `Retry-After` header gives the seconds until the minute ends.",
    ),
}


def _create_run(request: Request, data: dict[str, Any]) -> Response:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY):
        raise serializers.ValidationError({"Idempotency-Key": [f"Must be 1 to {MAX_IDEMPOTENCY_KEY} characters."]})
    # A plain dict, not the QueryDict: DRF would read a blank `?wait=` as absent instead of invalid.
    query = RunCreateQuerySerializer(data=request.query_params.dict())
    query.is_valid(raise_exception=True)
    run, _ = services.run_create(
        project=request_project(request),
        created_by=request.user,  # type: ignore[arg-type]
        api_key=request.auth if isinstance(request.auth, APIKey) else None,
        idempotency_key=key,
        **data,
    )
    wait = min(query.validated_data.get("wait", 0), settings.RUN_WAIT_MAX_S)
    run = selectors.run_wait(project=request_project(request), run_id=run.pk, seconds=wait)
    body = RunSerializer(run, context={"request": request}).data
    return Response(
        body,
        status=status.HTTP_200_OK if run.is_finished else status.HTTP_202_ACCEPTED,
        headers={"Location": body["url"]},
    )


@extend_schema_view(
    list=extend_schema(
        summary="List your runs, newest first",
        parameters=[RunFilterSerializer],
    ),
    retrieve=extend_schema(summary="Get a run"),
    create=extend_schema(
        summary="Run a prompt version against its model",
        request=RunCreateSerializer,
        responses=CREATE_RESPONSES,
        parameters=[IDEMPOTENCY_HEADER, RunCreateQuerySerializer],
        examples=RUN_EXAMPLES,
    ),
)
@extend_schema(tags=["runs"])
class RunViewSet(viewsets.GenericViewSet):
    serializer_class = RunSerializer
    required_scopes = {
        "list": Scope.RUNS_READ,
        "retrieve": Scope.RUNS_READ,
        "create": Scope.RUNS_EXECUTE,
        "cancel": Scope.RUNS_EXECUTE,
    }
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Run]:
        if getattr(self, "swagger_fake_view", False):
            return Run.objects.none()
        # A plain dict, not the QueryDict: DRF would read a blank `?status=` as absent instead of invalid.
        filters = RunFilterSerializer(data=self.request.query_params.dict())
        filters.is_valid(raise_exception=True)
        return selectors.run_list(project=request_project(self.request), **filters.validated_data)

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(RunSerializer(page, many=True, context={"request": request}).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        run = selectors.run_get(project=request_project(request), run_id=pk)
        return Response(RunSerializer(run, context={"request": request}).data)

    def create(self, request: Request) -> Response:
        serializer = RunCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return _create_run(request, serializer.validated_data)

    @extend_schema(
        summary="Cancel a queued run (it will never execute)",
        request=None,
        responses={200: RunSerializer, 409: OpenApiResponse(ErrorSerializer, description="Not queued any more.")},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        run = selectors.run_get(project=request_project(request), run_id=pk)
        run = services.run_cancel(run=run)
        return Response(RunSerializer(run, context={"request": request}).data)


class SeedRunView(APIView):
    """POST /api/v1/run: the seed's endpoint, an alias of POST /api/v1/runs that also takes
    `{"prompt_version_id", "variables", "model"}`."""

    required_scopes = {"post": Scope.RUNS_EXECUTE}

    @extend_schema(
        summary="Run a prompt version (alias of POST /api/v1/runs; also takes prompt_version_id)",
        request=SeedRunCreateSerializer,
        responses=CREATE_RESPONSES,
        parameters=[IDEMPOTENCY_HEADER, RunCreateQuerySerializer],
        examples=[
            *RUN_EXAMPLES,
            OpenApiExample(
                "Seed shape: a prompt version's id",
                request_only=True,
                value={"prompt_version_id": "0b6f1d5e-8d2c-4c61-9a53-3f0c2b8e7a10", "variables": {"name": "Ada"}},
            ),
        ],
        tags=["runs"],
        operation_id="run_create_alias",
    )
    def post(self, request: Request) -> Response:
        serializer = SeedRunCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return _create_run(request, serializer.validated_data)
