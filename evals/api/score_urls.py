from django.urls import path

from evals.api.score_views import RunScoresView, SplitReportView

urlpatterns = [
    path("runs/<str:id>/scores", RunScoresView.as_view(), name="run-scores"),
    path("prompts/<str:ref>/labels/<slug:label>/report", SplitReportView.as_view(), name="label-split-report"),
]
