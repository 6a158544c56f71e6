from rest_framework.routers import SimpleRouter

from accounts.api.views import APIKeyViewSet

router = SimpleRouter(trailing_slash=False)
router.register("keys", APIKeyViewSet, basename="apikey")

urlpatterns = router.urls
