from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from billing import selectors
from billing.api.serializers import CostLogSerializer, CostSummaryQuerySerializer, CostSummarySerializer
from billing.models import CostLog


@extend_schema(tags=["costs"])
class CostViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = CostLogSerializer

    def get_queryset(self) -> QuerySet[CostLog]:
        if getattr(self, "swagger_fake_view", False):
            return CostLog.objects.none()
        return selectors.cost_log_list(owner=self.request.user)  # type: ignore[arg-type]

    @extend_schema(summary="List your cost entries, newest first")
    def list(self, request: Request) -> Response:
        return super().list(request)

    @extend_schema(
        summary="Your spend, grouped by day, model, provider, prompt or key",
        parameters=[CostSummaryQuerySerializer],
        responses={200: CostSummarySerializer},
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def summary(self, request: Request) -> Response:
        query = CostSummaryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        summary = selectors.cost_summary(
            owner=request.user,  # type: ignore[arg-type]
            start=data.get("from"),
            end=data.get("to"),
            group_by=data["group_by"],
        )
        return Response(CostSummarySerializer(summary).data)
