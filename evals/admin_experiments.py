"""Admin of experiments: the list, and each experiment's result page (the comparison table, the
per-example outputs side by side, and a chart of the prompt's scores per version over time).

Experiments are created through the API or `manage.py evaluate` (evals.experiment_services) and
scored by workers, so the admin only reads them."""

import json
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import SafeString

from billing.chart import Bar, bar_chart
from evals import experiment_selectors
from evals.models import Experiment, ExperimentArm
from llmops.admin import ReadOnlyAdmin

# Per-example rows shown on the result page; the API pages through all of them.
EXAMPLES_SHOWN = 200


def _percent(value: Any) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def _number(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def score_history_chart(experiment: Experiment, scorer: str) -> SafeString:
    """One bar per version of each completed experiment of the prompt on the dataset, oldest first:
    the mean `scorer` score of that version then."""
    bars = [
        Bar(
            label=f"v{point.version} {point.at:%m-%d}",
            value=point.mean_decimal,
            tooltip=f"v{point.version}, {point.at:%Y-%m-%d %H:%M} ({point.experiment_name}): mean {point.mean:.3f}",
            data={"version": str(point.version), "experiment": str(point.experiment_id), "mean": f"{point.mean:.4f}"},
        )
        for point in experiment_selectors.score_history(experiment=experiment, scorer=scorer)
    ]
    return bar_chart(
        element_id="score-history",
        title=f"Mean {scorer} per version over time (dataset {experiment.dataset.name})",
        bars=bars,
        x_label="version and experiment date",
        y_label=scorer,
        tick_text=lambda tick: f"{tick:.2f}",
    )


@admin.register(Experiment)
class ExperimentAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "project", "prompt", "dataset_at", "versions", "status", "created_at", "finished_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["id", "name", "prompt__name", "dataset__name", "project__slug"]
    list_select_related = ["project", "prompt", "dataset", "dataset_version"]
    date_hierarchy = "created_at"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "status",
                    "project",
                    "prompt",
                    "dataset_at",
                    "scorers_text",
                    "error_message",
                    "created_by",
                    "created_at",
                    "finished_at",
                ]
            },
        ),
        ("Results", {"fields": ["results"]}),
        ("Scores over time", {"fields": ["history"]}),
        ("Examples side by side", {"fields": ["examples"]}),
    ]
    readonly_fields = ["dataset_at", "scorers_text", "results", "history", "examples"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Experiment]:
        return super().get_queryset(request).prefetch_related("arms__prompt_version")

    @admin.display(description="dataset")
    def dataset_at(self, experiment: Experiment) -> str:
        return f"{experiment.dataset.name} v{experiment.dataset_version.number}"

    @admin.display(description="versions (baseline first)")
    def versions(self, experiment: Experiment) -> str:
        arms: list[ExperimentArm] = list(experiment.arms.all())
        return ", ".join(
            f"v{arm.prompt_version.number}" + (f" ({arm.ref})" if not arm.ref.isdigit() else "") for arm in arms
        )

    @admin.display(description="scorers")
    def scorers_text(self, experiment: Experiment) -> str:
        return ", ".join(f"{spec['name']} (pass at {spec['threshold']:g})" for spec in experiment.scorers)

    @admin.display(description="comparison")
    def results(self, experiment: Experiment) -> str:
        summary = experiment.summary or {}
        if not summary:
            return f"No results yet: the experiment is {experiment.status}."
        scorer_names = [spec["name"] for spec in experiment.scorers]
        arms = []
        for arm in summary.get("arms", []):
            scores = arm.get("scores", {})
            arms.append(
                {
                    **arm,
                    "cells": [
                        {
                            "name": name,
                            "mean": _number(scores.get(name, {}).get("mean")),
                            "median": _number(scores.get(name, {}).get("median")),
                            "pass_rate": _percent(scores.get(name, {}).get("pass_rate")),
                            "errors": scores.get(name, {}).get("errors", 0),
                        }
                        for name in scorer_names
                    ],
                }
            )
        refs = {arm["position"]: f"v{arm['version']}" for arm in summary.get("arms", [])}
        comparisons = [
            {
                **comparison,
                "baseline_ref": refs.get(comparison["baseline"], "?"),
                "candidate_ref": refs.get(comparison["candidate"], "?"),
                "p_text": _number(comparison.get("p_value"), 4),
                "delta_text": _number(comparison.get("mean_delta")),
            }
            for comparison in summary.get("comparisons", [])
        ]
        return render_to_string(
            "admin/evals/experiment/results.html",
            {"arms": arms, "scorer_names": scorer_names, "comparisons": comparisons, "summary": summary},
        )

    @admin.display(description="chart")
    def history(self, experiment: Experiment) -> SafeString | str:
        if not experiment.scorers:
            return "-"
        return score_history_chart(experiment, experiment.scorers[0]["name"])

    @admin.display(description="outputs")
    def examples(self, experiment: Experiment) -> str:
        scorer_names = [spec["name"] for spec in experiment.scorers]
        rows = experiment_selectors.experiment_example_rows(experiment)
        shown = []
        for row in rows[:EXAMPLES_SHOWN]:
            arms = []
            for arm in row["arms"]:
                scores = arm.get("scores", {})
                arms.append(
                    {
                        **arm,
                        "run_url": (
                            reverse(f"{self.admin_site.name}:runs_run_change", args=[arm["run_id"]])
                            if arm.get("run_id")
                            else ""
                        ),
                        "cells": [{"name": name, **_score_cell(scores.get(name))} for name in scorer_names],
                    }
                )
            variables_json = json.dumps(row["example"]["variables"], indent=1, ensure_ascii=False, sort_keys=True)
            shown.append({"example": row["example"], "variables_json": variables_json, "arms": arms})
        return render_to_string(
            "admin/evals/experiment/examples.html",
            {"rows": shown, "more": max(len(rows) - EXAMPLES_SHOWN, 0), "arms": list(experiment.arms.all())},
        )


def _score_cell(score: dict[str, Any] | None) -> dict[str, Any]:
    if score is None:
        return {"text": "-", "passed": None, "reason": ""}
    if score.get("value") is None:
        return {"text": "error", "passed": False, "reason": score.get("error", "")}
    return {"text": _number(score["value"]), "passed": score.get("passed"), "reason": score.get("reason", "")}
