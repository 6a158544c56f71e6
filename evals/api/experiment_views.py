from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.access import request_project, request_role
from accounts.models import APIKey, Scope
from evals import experiment_selectors, experiment_services, gates
from evals.api.experiment_serializers import (
    CompareQuerySerializer,
    CompareSerializer,
    ExampleRowSerializer,
    ExperimentCreateSerializer,
    ExperimentFilterSerializer,
    ExperimentSerializer,
    LabelGateCreateSerializer,
    LabelGateSerializer,
)
from evals.models import Experiment
from llmops.schema import ErrorSerializer
from prompts import selectors as prompt_selectors
from prompts.models import Prompt

PROMPT_REF = OpenApiParameter(
    "ref", OpenApiTypes.STR, OpenApiParameter.PATH, description="The prompt's id or its name."
)
EXPERIMENT_ID = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The experiment's id.")


@extend_schema_view(
    list=extend_schema(
        summary="List your experiments, newest first, optionally of one prompt",
        parameters=[ExperimentFilterSerializer],
        responses={200: ExperimentSerializer(many=True)},
    ),
    retrieve=extend_schema(
        summary="Get an experiment, with its summary once completed",
        parameters=[EXPERIMENT_ID],
        responses={200: ExperimentSerializer},
    ),
    create=extend_schema(
        summary="Run prompt versions over a dataset version and score them",
        description=(
            "One batch per version over the dataset version's examples (default: its latest); the first "
            "version is the baseline. Every example must render against every version: a problem is a 400 "
            "naming `versions.<index>.examples.<position>.<field>`, and nothing is created. Once every batch "
            "completed, the scorers score each output and `summary` holds the results: per version its "
            "runs, tokens, cost, latency and score statistics, then each version compared with the baseline "
            "by an exact sign test (verdict at alpha 0.05)."
        ),
        request=ExperimentCreateSerializer,
        responses={201: ExperimentSerializer},
        examples=[
            OpenApiExample(
                "Version 4 against production",
                request_only=True,
                value={
                    "prompt": "greet",
                    "dataset": "greetings",
                    "versions": ["production", 4],
                    "scorers": [{"name": "exact_match", "threshold": 1}],
                    "concurrency": 4,
                    "name": "v4 candidate",
                },
            )
        ],
    ),
)
@extend_schema(tags=["experiments"])
class ExperimentViewSet(viewsets.GenericViewSet):
    serializer_class = ExperimentSerializer
    required_scopes = {
        "list": Scope.EVALS_READ,
        "retrieve": Scope.EVALS_READ,
        "examples": Scope.EVALS_READ,
        "compare": Scope.EVALS_READ,
        "create": Scope.EVALS_WRITE,
        "cancel": Scope.EVALS_WRITE,
    }
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Experiment]:
        if getattr(self, "swagger_fake_view", False):
            return Experiment.objects.none()
        filters = ExperimentFilterSerializer(data=self.request.query_params.dict())
        filters.is_valid(raise_exception=True)
        project = request_project(self.request)
        prompt = None
        if "prompt" in filters.validated_data:
            prompt = prompt_selectors.prompt_get(project=project, ref=filters.validated_data["prompt"])
        return experiment_selectors.experiment_list(project=project, prompt=prompt)

    def _experiment(self, pk: str) -> Experiment:
        return experiment_selectors.experiment_get(project=request_project(self.request), experiment_id=pk)

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ExperimentSerializer(page, many=True, context={"request": request}).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(ExperimentSerializer(self._experiment(pk), context={"request": request}).data)

    def create(self, request: Request) -> Response:
        serializer = ExperimentCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        experiment = experiment_services.experiment_create(
            project=request_project(request),
            created_by=request.user,  # type: ignore[arg-type]
            api_key=request.auth if isinstance(request.auth, APIKey) else None,
            **serializer.validated_data,
        )
        body = ExperimentSerializer(self._experiment(str(experiment.pk)), context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})

    @extend_schema(
        summary="The experiment's examples, each with every version's output and scores",
        parameters=[EXPERIMENT_ID],
        responses={200: ExampleRowSerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def examples(self, request: Request, pk: str) -> Response:
        experiment = self._experiment(pk)
        page = self.paginate_queryset(experiment_selectors.experiment_examples(experiment))
        rows = experiment_selectors.experiment_example_rows(experiment, page)
        return self.get_paginated_response(ExampleRowSerializer(rows, many=True).data)

    @extend_schema(
        summary="Compare two versions of the experiment on one scorer, example by example",
        description=(
            "The examples on which `candidate` scored higher, lower or the same as `baseline` (arm positions), "
            "with both values, and the exact two-sided sign test (ties dropped): `verdict` is `better` or "
            "`worse` when p < 0.05, else `no significant difference`. A position or scorer the experiment "
            "does not have is a 400 naming it."
        ),
        parameters=[EXPERIMENT_ID, CompareQuerySerializer],
        responses={200: CompareSerializer},
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def compare(self, request: Request, pk: str) -> Response:
        experiment = self._experiment(pk)  # 404 before validation: a 400 would confirm the id exists
        query = CompareQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        result = experiment_selectors.experiment_compare(experiment=experiment, **query.validated_data)
        return Response(CompareSerializer(result).data)

    @extend_schema(
        summary="Cancel a running experiment and its batches (running runs finish)",
        request=None,
        parameters=[EXPERIMENT_ID],
        responses={
            200: ExperimentSerializer,
            409: OpenApiResponse(ErrorSerializer, description="Already finished (`not_cancelable`)."),
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        experiment_services.experiment_cancel(experiment=self._experiment(pk))
        return Response(ExperimentSerializer(self._experiment(pk), context={"request": request}).data)


@extend_schema_view(
    list=extend_schema(
        summary="The prompt's gated labels",
        parameters=[PROMPT_REF],
        responses={200: LabelGateSerializer(many=True)},
    ),
    create=extend_schema(
        summary="Gate a label: it moves only to a version that passed an experiment (admins)",
        description=(
            "Moving the label (PUT /api/v1/prompts/{ref}/labels/{label}) then needs a completed experiment of "
            "the prompt on the dataset's latest version in which the target version's mean `scorer` score is "
            "at least `threshold` and, when the label's current version was that experiment's baseline, not "
            "significantly worse than it; otherwise the move is a 409 `evaluation_required`. Replaces the "
            "label's gate if it has one."
        ),
        parameters=[PROMPT_REF],
        request=LabelGateCreateSerializer,
        responses={201: LabelGateSerializer},
        examples=[
            OpenApiExample(
                "Gate production",
                request_only=True,
                value={"label": "production", "dataset": "greetings", "scorer": "exact_match", "threshold": 0.8},
            )
        ],
    ),
    destroy=extend_schema(
        summary="Remove a label's gate (admins)",
        parameters=[
            PROMPT_REF,
            OpenApiParameter("label", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=r"^[-a-zA-Z0-9_]+$"),
        ],
        responses={204: None},
    ),
)
@extend_schema(tags=["prompts"])
class LabelGateViewSet(viewsets.GenericViewSet):
    serializer_class = LabelGateSerializer
    pagination_class = None
    required_scopes = {
        "list": Scope.EVALS_READ,
        "create": Scope.EVALS_WRITE,
        "destroy": Scope.EVALS_WRITE,
    }

    def _prompt(self) -> Prompt:
        return prompt_selectors.prompt_get(project=request_project(self.request), ref=self.kwargs["ref"])

    def list(self, request: Request, ref: str) -> Response:
        return Response(LabelGateSerializer(gates.label_gate_list(prompt=self._prompt()), many=True).data)

    def create(self, request: Request, ref: str) -> Response:
        prompt = self._prompt()
        serializer = LabelGateCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        gate = gates.label_gate_set(
            project=request_project(request),
            prompt=prompt,
            created_by=request.user,  # type: ignore[arg-type]
            role=request_role(request),
            **serializer.validated_data,
        )
        gate = gates.label_gate_list(prompt=prompt).get(pk=gate.pk)
        return Response(LabelGateSerializer(gate).data, status=status.HTTP_201_CREATED)

    def destroy(self, request: Request, ref: str, label: str) -> Response:
        gates.label_gate_remove(prompt=self._prompt(), label=label, role=request_role(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
