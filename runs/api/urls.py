from django.urls import path
from rest_framework.routers import SimpleRouter

from runs.api.views import RunViewSet, SeedRunView

router = SimpleRouter(trailing_slash=False)
router.register("runs", RunViewSet, basename="run")

urlpatterns = [
    path("run", SeedRunView.as_view(), name="run-alias"),
    *router.urls,
]
