from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from llmops.exception_handler import json_not_found
from llmops.health import HealthView
from llmops.metrics import metrics_view

api_v1: list[URLPattern | URLResolver] = [
    path("health", HealthView.as_view(), name="health"),
    path("", include("accounts.api.urls")),
    path("", include("prompts.api.urls")),
    path("", include("runs.api.urls")),
    path("", include("billing.api.urls")),
    path("", include("webhooks.api.urls")),
    path("", include("evals.api.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/", include(api_v1)),
    # The OpenAI-compatible gateway, where the OpenAI SDKs look: base_url=<host>/v1.
    path("v1/", include("gateway.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    # Last: every other /api/ path gets the JSON 404, with DEBUG on too (whose 404 is an HTML page).
    re_path(r"^api/", json_not_found, name="api-not-found"),
]

handler400 = "llmops.exception_handler.json_bad_request"
handler403 = "llmops.exception_handler.json_permission_denied"
handler404 = "llmops.exception_handler.json_not_found"
handler500 = "llmops.exception_handler.json_server_error"
