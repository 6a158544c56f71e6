from django.urls import path
from rest_framework.routers import SimpleRouter

from accounts.api.project_views import ProjectMemberViewSet, ProjectViewSet
from accounts.api.views import APIKeyViewSet

router = SimpleRouter(trailing_slash=False)
router.register("keys", APIKeyViewSet, basename="apikey")
router.register("projects", ProjectViewSet, basename="project")

members = ProjectMemberViewSet.as_view({"get": "list", "post": "create"})
member_detail = ProjectMemberViewSet.as_view({"patch": "partial_update", "delete": "destroy"})

urlpatterns = [
    path("projects/<str:ref>/members", members, name="project-member-list"),
    path("projects/<str:ref>/members/<str:user>", member_detail, name="project-member-detail"),
    *router.urls,
]
