from rest_framework.routers import SimpleRouter

from evals.api.dataset_views import DatasetViewSet

router = SimpleRouter(trailing_slash=False)
router.register("datasets", DatasetViewSet, basename="dataset")

urlpatterns = [*router.urls]
