from django.urls import include, path

urlpatterns = [
    path("", include("evals.api.dataset_urls")),
    path("", include("evals.api.experiment_urls")),
    path("", include("evals.api.score_urls")),
    path("", include("evals.api.scorer_urls")),
]
