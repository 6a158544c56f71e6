from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import request_project
from accounts.models import Scope
from evals import score_selectors, score_services
from evals.api.score_serializers import (
    ScoreCreateSerializer,
    ScoreListSerializer,
    ScoreSerializer,
    SplitReportQuerySerializer,
    SplitReportSerializer,
)
from llmops.schema import ErrorSerializer

RUN_ID = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The run's id.")
NO_RUN = OpenApiResponse(ErrorSerializer, description="No such run (or another project's).")


@extend_schema(tags=["evals"], parameters=[RUN_ID])
class RunScoresView(APIView):
    """A run's scores: clients score runs (feedback, a human's grade), experiments' scorers too."""

    required_scopes = {"get": Scope.EVALS_READ, "post": Scope.EVALS_WRITE}

    @extend_schema(
        summary="Score a run (a client's score: feedback, a grade)",
        description=(
            "Adds a score of a finished run of the project: a `name` of your choosing, a `value` from 0 to 1 and "
            "a `reason`. Scores are append-only: the same name again is another score (reports take the mean). "
            "A split label's report (`GET /api/v1/prompts/{ref}/labels/{label}/report`) compares arms on them."
        ),
        request=ScoreCreateSerializer,
        responses={
            201: ScoreSerializer,
            404: NO_RUN,
            409: OpenApiResponse(ErrorSerializer, description="`run_not_finished`: the run is queued or running."),
        },
        examples=[
            OpenApiExample(
                "Thumbs up", request_only=True, value={"name": "thumbs_up", "value": 1, "reason": "Solved it."}
            )
        ],
    )
    def post(self, request: Request, id: str) -> Response:
        serializer = ScoreCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        score = score_services.score_record(
            project=request_project(request),
            run_id=id,
            created_by=request.user,  # type: ignore[arg-type]
            **serializer.validated_data,
        )
        return Response(ScoreSerializer(score).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="A run's scores, newest first", responses={200: ScoreListSerializer, 404: NO_RUN})
    def get(self, request: Request, id: str) -> Response:
        scores = score_selectors.score_list(project=request_project(request), run_id=id)
        return Response(ScoreListSerializer({"scores": scores}).data)


@extend_schema(tags=["evals"])
class SplitReportView(APIView):
    """The arms of a label's A/B split compared: runs, outcomes, tokens, cost, latency and scores."""

    required_scopes = {"get": Scope.EVALS_READ}

    @extend_schema(
        summary="Compare the versions a label's runs went to (its A/B split's arms)",
        description=(
            "The runs made through the label (by `label`, a split key or none, or by default as `production`) in "
            "[`from`, `to`), per version: count, succeeded and failed, tokens (sum, mean), cost (known costs "
            "summed, unknown ones counted), latency p50/p95 and the mean and count of each score name given "
            "(`POST /api/v1/runs/{id}/scores`)."
        ),
        parameters=[
            OpenApiParameter("ref", OpenApiTypes.STR, OpenApiParameter.PATH, description="The prompt's id or name."),
            OpenApiParameter(
                "label", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=r"^[-a-zA-Z0-9_]+$", description="A label."
            ),
            SplitReportQuerySerializer,
        ],
        responses={
            200: SplitReportSerializer,
            404: OpenApiResponse(ErrorSerializer, description="No such prompt (or another project's), or label."),
        },
    )
    def get(self, request: Request, ref: str, label: str) -> Response:
        # A plain dict, not the QueryDict: DRF would read a blank `?to=` as absent instead of invalid.
        query = SplitReportQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        report = score_selectors.split_report(
            project=request_project(request),
            prompt_ref=ref,
            label=label,
            start=query.validated_data.get("from"),
            end=query.validated_data.get("to"),
        )
        return Response(SplitReportSerializer(report).data)
