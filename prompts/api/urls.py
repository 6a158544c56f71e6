from django.urls import path
from rest_framework.routers import SimpleRouter

from prompts.api.views import PromptVersionViewSet, PromptViewSet

router = SimpleRouter(trailing_slash=False)
router.register("prompts", PromptViewSet, basename="prompt")

versions = PromptVersionViewSet.as_view({"get": "list", "post": "create"})
version_detail = PromptVersionViewSet.as_view({"get": "retrieve"})

urlpatterns = [
    path("prompts/<str:ref>/versions", versions, name="prompt-version-list"),
    path("prompts/<str:ref>/versions/<int:number>", version_detail, name="prompt-version-detail"),
    *router.urls,
]
