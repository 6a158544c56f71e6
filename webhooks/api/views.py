"""Webhook endpoints API: register, list, change, delete, and read an endpoint's delivery log."""

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.access import request_project
from accounts.models import Scope
from webhooks import selectors, services
from webhooks.api.serializers import (
    WebhookDeliverySerializer,
    WebhookEndpointCreatedSerializer,
    WebhookEndpointCreateSerializer,
    WebhookEndpointSerializer,
    WebhookEndpointUpdateSerializer,
)
from webhooks.models import WebhookEndpoint


@extend_schema_view(
    list=extend_schema(summary="List your webhook endpoints"),
    create=extend_schema(
        summary="Register a webhook endpoint (the signing secret is returned once)",
        request=WebhookEndpointCreateSerializer,
        responses={201: WebhookEndpointCreatedSerializer},
        examples=[
            OpenApiExample(
                "Finished runs",
                request_only=True,
                value={
                    "url": "https://hooks.example.com/llmops",
                    "events": ["run.succeeded", "run.failed"],
                    "description": "Ops channel",
                },
            )
        ],
    ),
    retrieve=extend_schema(summary="Get a webhook endpoint"),
    partial_update=extend_schema(
        summary="Change a webhook endpoint's URL, events, description or active flag",
        request=WebhookEndpointUpdateSerializer,
        examples=[OpenApiExample("Pause it", request_only=True, value={"is_active": False})],
    ),
    destroy=extend_schema(summary="Delete a webhook endpoint and its delivery log"),
)
@extend_schema(tags=["webhooks"])
class WebhookEndpointViewSet(viewsets.GenericViewSet):
    serializer_class = WebhookEndpointSerializer
    lookup_value_regex = "[0-9a-fA-F-]{36}"
    required_scopes = {
        "list": Scope.KEYS_MANAGE,
        "retrieve": Scope.KEYS_MANAGE,
        "create": Scope.KEYS_MANAGE,
        "partial_update": Scope.KEYS_MANAGE,
        "destroy": Scope.KEYS_MANAGE,
        "deliveries": Scope.KEYS_MANAGE,
    }

    def get_queryset(self) -> QuerySet[WebhookEndpoint]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return WebhookEndpoint.objects.none()
        return selectors.webhook_endpoint_list(project=request_project(self.request))

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(WebhookEndpointSerializer(page, many=True).data)

    def create(self, request: Request) -> Response:
        serializer = WebhookEndpointCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint, secret = services.webhook_endpoint_create(
            project=request_project(request),
            created_by=request.user,  # type: ignore[arg-type]
            **serializer.validated_data,
        )
        data = WebhookEndpointCreatedSerializer(endpoint, context={"secret": secret}).data
        response = Response(data, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"  # the only copy of the secret must not sit in a cache
        return response

    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(WebhookEndpointSerializer(self.get_object()).data)

    def partial_update(self, request: Request, pk: str) -> Response:
        endpoint = self.get_object()  # 404 before validation: a 400 would confirm someone else's id exists
        serializer = WebhookEndpointUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields: dict[str, Any] = serializer.validated_data
        endpoint = services.webhook_endpoint_update(endpoint=endpoint, **fields)
        return Response(WebhookEndpointSerializer(endpoint).data)

    def destroy(self, request: Request, pk: str) -> Response:
        services.webhook_endpoint_delete(endpoint=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="An endpoint's deliveries, newest first (status, attempts, last response code)",
        responses={200: WebhookDeliverySerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, pk: str) -> Response:
        page = self.paginate_queryset(selectors.webhook_delivery_list(endpoint=self.get_object()))
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)
