"""Reads for scores of runs and the report of a label's A/B split: its arms compared."""

import math
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Avg, Count, DecimalField, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce

from accounts.models import Project
from evals.models import Score
from llmops.errors import NotFound
from prompts import selectors as prompt_selectors
from prompts.models import PromptLabel
from runs import selectors as run_selectors
from runs.models import Run

_MONEY = DecimalField(max_digits=18, decimal_places=10)


def score_list(*, project: Project, run_id: str) -> QuerySet[Score]:
    """Every score of one run of `project`, newest first (another project's run: NotFound)."""
    run = run_selectors.run_get(project=project, run_id=run_id)
    return Score.objects.filter(project=project, run=run).select_related("created_by").order_by("-created_at")


def _percentile(ordered: list[int], percent: int) -> int | None:
    """Nearest rank: the smallest value with at least `percent`% of the values at or below it."""
    if not ordered:
        return None
    return ordered[max(math.ceil(percent / 100 * len(ordered)) - 1, 0)]


def split_report(
    *, project: Project, prompt_ref: str, label: str, start: datetime | None = None, end: datetime | None = None
) -> dict[str, Any]:
    """The runs made through `label` of a prompt in [start, end), per arm (the version they ran): run
    count, succeeded and failed, tokens (sum and mean of the runs that have them), cost (sum of known
    costs; runs of unknown cost counted apart), latency p50/p95 (nearest rank, of runs that called a
    provider: not cached ones) and, per score name, the mean and count of the scores given. Arms in
    version order; a version of the current split with no run yet is an arm with zeros. NotFound for
    another project's prompt or a label it does not have."""
    prompt = prompt_selectors.prompt_get(project=project, ref=prompt_ref)
    found = PromptLabel.objects.filter(prompt=prompt, name=label).select_related("version").first()
    if found is None:
        raise NotFound(f"Label {label!r} does not exist.", fields={"label": ["No such label on this prompt."]})
    runs = Run.objects.filter(project=project, label=label, prompt_version__prompt=prompt)
    if start is not None:
        runs = runs.filter(created_at__gte=start)
    if end is not None:
        runs = runs.filter(created_at__lt=end)
    arm = "prompt_version__number"
    counts = {
        row[arm]: row
        for row in runs.values(arm).annotate(
            runs=Count("id"),
            succeeded=Count("id", filter=Q(status=Run.Status.SUCCEEDED)),
            failed=Count("id", filter=Q(status=Run.Status.FAILED)),
            with_tokens=Count("total_tokens"),
            tokens=Coalesce(Sum("total_tokens"), 0),
            cost=Coalesce(
                Sum("cost_log__total_cost", filter=Q(cost_log__cost_known=True)),
                Value(Decimal(0)),
                output_field=_MONEY,
            ),
            unknown_cost_runs=Count("id", filter=Q(cost_log__cost_known=False)),
        )
    }
    # One column of the arms' runs, sorted by the database: the percentiles need every value.
    latencies: dict[int, list[int]] = {}
    timed = runs.filter(latency_ms__isnull=False, cached=False).order_by(arm, "latency_ms")
    for number, latency in timed.values_list(arm, "latency_ms"):
        latencies.setdefault(number, []).append(latency)
    scores: dict[int, list[dict[str, Any]]] = {}
    scored = (
        Score.objects.filter(project=project, run__in=runs, value__isnull=False)
        .values(f"run__{arm}", "name")
        .annotate(mean=Avg("value"), count=Count("id"))
        .order_by(f"run__{arm}", "name")
    )
    for row in scored:
        scores.setdefault(row[f"run__{arm}"], []).append(
            {"name": row["name"], "mean": row["mean"], "count": row["count"]}
        )
    weights = {item["version"]: item["weight"] for item in found.split}
    arms = []
    for number in sorted({*counts, *weights}):
        row = counts.get(number, {})
        ordered = latencies.get(number, [])
        with_tokens = row.get("with_tokens", 0)
        arms.append(
            {
                "version": number,
                "weight": weights.get(number),
                "runs": row.get("runs", 0),
                "succeeded": row.get("succeeded", 0),
                "failed": row.get("failed", 0),
                "tokens": {
                    "sum": row.get("tokens", 0),
                    "mean": row["tokens"] / with_tokens if with_tokens else None,
                },
                "cost": {"sum": row.get("cost", Decimal(0)), "unknown_cost_runs": row.get("unknown_cost_runs", 0)},
                "latency_ms": {"p50": _percentile(ordered, 50), "p95": _percentile(ordered, 95)},
                "scores": scores.get(number, []),
            }
        )
    return {
        "prompt": {"id": prompt.pk, "name": prompt.name},
        "label": label,
        "version": found.version.number,
        "split": found.split,
        "from": start,
        "to": end,
        "currency": "USD",
        "arms": arms,
    }
