from django.urls import path

from evals.api.scorer_views import ScorerListView

urlpatterns = [
    path("scorers", ScorerListView.as_view(), name="scorer-list"),
]
