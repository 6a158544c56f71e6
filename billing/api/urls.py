from rest_framework.routers import SimpleRouter

from billing.api.views import BudgetViewSet, CostViewSet

router = SimpleRouter(trailing_slash=False)
router.register("costs", CostViewSet, basename="cost")
router.register("budgets", BudgetViewSet, basename="budget")

urlpatterns = router.urls
