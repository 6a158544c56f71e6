from datetime import datetime
from functools import cached_property
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.access import request_project
from accounts.models import Scope
from billing import selectors, services
from billing.api.serializers import (
    BudgetCreateSerializer,
    BudgetSerializer,
    BudgetUpdateSerializer,
    CostLogSerializer,
    CostSummaryQuerySerializer,
    CostSummarySerializer,
)
from billing.models import Budget, CostLog
from llmops.schema import ErrorSerializer


@extend_schema(tags=["costs"])
class CostViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = CostLogSerializer
    required_scopes = {"list": Scope.BILLING_READ, "summary": Scope.BILLING_READ}

    def get_queryset(self) -> QuerySet[CostLog]:
        if getattr(self, "swagger_fake_view", False):
            return CostLog.objects.none()
        return selectors.cost_log_list(project=request_project(self.request))

    @extend_schema(summary="List your cost entries, newest first")
    def list(self, request: Request) -> Response:
        return super().list(request)

    @extend_schema(
        summary="Your spend, grouped by day, model, provider, prompt, prompt version, key or member",
        parameters=[CostSummaryQuerySerializer],
        responses={200: CostSummarySerializer},
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def summary(self, request: Request) -> Response:
        # A plain dict, not the QueryDict: DRF would read a blank `?to=` as absent instead of invalid.
        query = CostSummaryQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        data = query.validated_data
        summary = selectors.cost_summary(
            project=request_project(request),
            start=data.get("from"),
            end=data.get("to"),
            group_by=data["group_by"],
        )
        return Response(CostSummarySerializer(summary).data)


@extend_schema_view(
    list=extend_schema(summary="List your budgets with their spend in the current window"),
    retrieve=extend_schema(summary="Get a budget"),
    create=extend_schema(
        summary="Create a budget for yourself or for one of your keys",
        request=BudgetCreateSerializer,
        responses={
            201: BudgetSerializer,
            409: OpenApiResponse(ErrorSerializer, description="`budget_exists`: that scope has a budget already."),
        },
        examples=[
            OpenApiExample("Project-wide, per month", request_only=True, value={"amount": "25.00", "window": "month"}),
            OpenApiExample(
                "One key, per day",
                request_only=True,
                value={"amount": "1.50", "window": "day", "api_key": "3f2b8c1e-5d4a-4e7b-9c6d-1a2b3c4d5e6f"},
            ),
        ],
    ),
    partial_update=extend_schema(
        summary="Change a budget's amount or window",
        request=BudgetUpdateSerializer,
        responses={200: BudgetSerializer},
        examples=[OpenApiExample("New amount", request_only=True, value={"amount": "40"})],
    ),
    destroy=extend_schema(summary="Delete a budget (its runs in flight are no longer limited by it)"),
)
@extend_schema(tags=["budgets"])
class BudgetViewSet(viewsets.GenericViewSet):
    """Hard budgets: a run is refused (402) when its maximum cost does not fit in what is left."""

    serializer_class = BudgetSerializer
    lookup_value_regex = "[^/]+"
    required_scopes = {
        "list": Scope.BILLING_READ,
        "retrieve": Scope.BILLING_READ,
        "create": Scope.KEYS_MANAGE,
        "partial_update": Scope.KEYS_MANAGE,
        "destroy": Scope.KEYS_MANAGE,
    }

    @cached_property
    def now(self) -> datetime:
        """One clock reading per request, so the usage and the window shown with it agree."""
        return timezone.now()

    def get_queryset(self) -> QuerySet[Budget]:
        if getattr(self, "swagger_fake_view", False):
            return Budget.objects.none()
        return selectors.budget_list(project=request_project(self.request), now=self.now)

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "now": self.now}

    def _get(self, pk: str) -> Budget:
        return selectors.budget_get(project=request_project(self.request), budget_id=pk, now=self.now)

    def _respond(self, budget: Budget, status_code: int = status.HTTP_200_OK) -> Response:
        # Read back with its usage annotations.
        return Response(self.get_serializer(self._get(str(budget.pk))).data, status=status_code)

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(self.get_serializer(self._get(pk)).data)

    def create(self, request: Request) -> Response:
        serializer = BudgetCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        budget = services.budget_create(
            project=request_project(request),
            amount=data["amount"],
            window=data["window"],
            api_key_id=data.get("api_key"),
        )
        return self._respond(budget, status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str) -> Response:
        budget = self._get(pk)
        serializer = BudgetUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        budget = services.budget_update(budget=budget, **serializer.validated_data)
        return self._respond(budget)

    def destroy(self, request: Request, pk: str) -> Response:
        services.budget_delete(budget=self._get(pk))
        return Response(status=status.HTTP_204_NO_CONTENT)
