from django.urls import path
from rest_framework.routers import SimpleRouter

from runs.api.batch_views import BatchViewSet
from runs.api.views import RunViewSet, SeedRunView

router = SimpleRouter(trailing_slash=False)
router.register("runs", RunViewSet, basename="run")
router.register("batches", BatchViewSet, basename="batch")

urlpatterns = [
    path("run", SeedRunView.as_view(), name="run-alias"),
    *router.urls,
]
