from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import selectors, services
from accounts.api.serializers import APIKeyCreatedSerializer, APIKeyCreateSerializer, APIKeySerializer
from accounts.models import APIKey


@extend_schema_view(
    list=extend_schema(summary="List your API keys", tags=["keys"]),
    create=extend_schema(
        summary="Create an API key (the plaintext is returned once)",
        request=APIKeyCreateSerializer,
        responses={201: APIKeyCreatedSerializer},
        tags=["keys"],
    ),
    destroy=extend_schema(summary="Revoke an API key", tags=["keys"]),
)
class APIKeyViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    serializer_class = APIKeySerializer

    def get_queryset(self) -> QuerySet[APIKey]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return APIKey.objects.none()
        return selectors.api_key_list(user=self.request.user)  # type: ignore[arg-type]

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        serializer = APIKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        api_key, plaintext = services.api_key_create(user=request.user, **serializer.validated_data)  # type: ignore[arg-type]
        api_key.key = plaintext  # type: ignore[attr-defined]
        return Response(APIKeyCreatedSerializer(api_key).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: APIKey) -> None:
        services.api_key_revoke(api_key=instance)
