from django.urls import path
from rest_framework.routers import SimpleRouter

from evals.api.experiment_views import ExperimentViewSet, LabelGateViewSet

router = SimpleRouter(trailing_slash=False)
router.register("experiments", ExperimentViewSet, basename="experiment")

gate_list = LabelGateViewSet.as_view({"get": "list", "post": "create"})
gate_detail = LabelGateViewSet.as_view({"delete": "destroy"})

urlpatterns = [
    *router.urls,
    path("prompts/<str:ref>/gates", gate_list, name="prompt-gate-list"),
    path("prompts/<str:ref>/gates/<slug:label>", gate_detail, name="prompt-gate-detail"),
]
