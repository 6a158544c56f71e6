from rest_framework.routers import SimpleRouter

from billing.api.views import CostViewSet

router = SimpleRouter(trailing_slash=False)
router.register("costs", CostViewSet, basename="cost")

urlpatterns = router.urls
