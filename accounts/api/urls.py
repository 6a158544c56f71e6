from rest_framework.routers import SimpleRouter

from accounts.api.views import APIKeyViewSet
from accounts.api.webhooks import WebhookEndpointViewSet

router = SimpleRouter(trailing_slash=False)
router.register("keys", APIKeyViewSet, basename="apikey")
router.register("webhooks", WebhookEndpointViewSet, basename="webhookendpoint")

urlpatterns = router.urls
