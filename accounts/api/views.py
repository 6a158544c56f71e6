from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import selectors, services
from accounts.access import request_project
from accounts.api.serializers import (
    APIKeyCreatedSerializer,
    APIKeyCreateSerializer,
    APIKeyRotateSerializer,
    APIKeySerializer,
)
from accounts.models import APIKey, Scope
from llmops.schema import ErrorSerializer


def _acting_key(request: Request) -> APIKey | None:
    """The key the request came with; None for a staff session, which may grant any scope."""
    return request.auth if isinstance(request.auth, APIKey) else None


def _with_plaintext(api_key: APIKey, plaintext: str, status_code: int) -> Response:
    api_key.key = plaintext  # type: ignore[attr-defined]
    response = Response(APIKeyCreatedSerializer(api_key).data, status=status_code)
    response["Cache-Control"] = "no-store"  # the only copy of the secret must not sit in a cache
    return response


@extend_schema_view(
    list=extend_schema(summary="List the project's API keys"),
    create=extend_schema(
        summary="Create an API key (the plaintext is returned once)",
        request=APIKeyCreateSerializer,
        responses={201: APIKeyCreatedSerializer},
        examples=[
            OpenApiExample("All scopes, no expiry", request_only=True, value={"name": "ci"}),
            OpenApiExample(
                "Read-only, expiring",
                request_only=True,
                value={
                    "name": "dashboard",
                    "expires_at": "2030-01-01T00:00:00Z",
                    "scopes": ["runs:read", "billing:read"],
                },
            ),
        ],
    ),
    destroy=extend_schema(summary="Revoke an API key"),
)
@extend_schema(tags=["keys"])
class APIKeyViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    serializer_class = APIKeySerializer
    required_scopes = {
        "list": Scope.KEYS_MANAGE,
        "create": Scope.KEYS_MANAGE,
        "destroy": Scope.KEYS_MANAGE,
        "rotate": Scope.KEYS_MANAGE,
    }

    def get_queryset(self) -> QuerySet[APIKey]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return APIKey.objects.none()
        return selectors.api_key_list(project=request_project(self.request))

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        serializer = APIKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        api_key, plaintext = services.api_key_create(
            project=request_project(request),
            created_by=request.user,  # type: ignore[arg-type]
            created_by_key=_acting_key(request),
            **serializer.validated_data,
        )
        return _with_plaintext(api_key, plaintext, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Rotate an API key's secret (the new plaintext is returned once)",
        description="The key keeps its id, prefix and scopes. The old secret stops working at once, "
        "or after `grace_seconds`.",
        request=APIKeyRotateSerializer,
        examples=[OpenApiExample("Old secret works 10 more minutes", request_only=True, value={"grace_seconds": 600})],
        responses={
            200: APIKeyCreatedSerializer,
            409: OpenApiResponse(ErrorSerializer, description="The key is revoked or expired."),
        },
    )
    @action(detail=True, methods=["post"])
    def rotate(self, request: Request, pk: str) -> Response:
        api_key = self.get_object()  # 404 before validation: a 400 would confirm someone else's key exists
        serializer = APIKeyRotateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        api_key, plaintext = services.api_key_rotate(
            api_key=api_key,
            grace_seconds=serializer.validated_data["grace_seconds"],
            rotated_by_key=_acting_key(request),
        )
        return _with_plaintext(api_key, plaintext, status.HTTP_200_OK)

    def perform_destroy(self, instance: APIKey) -> None:
        services.api_key_revoke(api_key=instance)
