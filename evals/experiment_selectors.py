"""Reads for experiments: lists, one experiment, its rows per example, two arms compared.

Every lookup is scoped to its project: another project's experiment is "not found"."""

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Prefetch, QuerySet

from accounts.models import Project
from evals import stats
from evals.experiment_services import version_examples
from evals.models import Example, Experiment, ExperimentArm, Score
from llmops.errors import NotFound, ValidationFailed
from prompts.models import Prompt
from runs.models import BatchItem


def experiment_list(*, project: Project, prompt: Prompt | None = None) -> QuerySet[Experiment]:
    experiments = Experiment.objects.filter(project=project).select_related(
        "prompt", "dataset", "dataset_version", "created_by"
    )
    if prompt is not None:
        experiments = experiments.filter(prompt=prompt)
    arms = ExperimentArm.objects.select_related("prompt_version", "batch").order_by("position")
    return experiments.prefetch_related(Prefetch("arms", queryset=arms)).order_by("-created_at")


def experiment_get(*, project: Project, experiment_id: Any) -> Experiment:
    try:
        pk = uuid.UUID(str(experiment_id))
    except ValueError:
        raise NotFound("Experiment not found.") from None
    experiment = experiment_list(project=project).filter(pk=pk).first()
    if experiment is None:
        raise NotFound("Experiment not found.")
    return experiment


def experiment_examples(experiment: Experiment) -> QuerySet[Example]:
    """The examples of the experiment's dataset version, in position order (paginate this)."""
    return version_examples(experiment.dataset_version)


def experiment_example_rows(experiment: Experiment, examples: Any = None) -> list[dict[str, Any]]:
    """Per example (all of them, or the page `examples`): the example, and per arm its run and its
    scores. Three queries whatever the number of examples: the examples, the arms' items with their
    runs, the scores."""
    examples = list(experiment_examples(experiment) if examples is None else examples)
    keys = [str(example.pk) for example in examples]
    arms = list(experiment.arms.all().order_by("position"))
    items: dict[tuple[Any, str], BatchItem] = {
        (item.batch_id, item.key): item
        for item in BatchItem.objects.filter(batch__in=[arm.batch_id for arm in arms], key__in=keys).select_related(
            "run"
        )
    }
    scores: dict[tuple[Any, Any], dict[str, Any]] = defaultdict(dict)
    for score in Score.objects.filter(experiment=experiment, example__in=examples).only(
        "arm_id", "example_id", "name", "value", "passed", "reason", "error"
    ):
        scores[(score.arm_id, score.example_id)][score.name] = {
            "value": score.value,
            "passed": score.passed,
            "reason": score.reason,
            "error": score.error,
        }
    rows = []
    for example in examples:
        row_arms = []
        for arm in arms:
            item = items.get((arm.batch_id, str(example.pk)))
            run = item.run if item is not None else None
            if run is not None:
                status = run.status
            elif item is not None:
                status = (
                    "canceled"
                    if item.error_code == BatchItem.CANCELED_CODE
                    else "failed"
                    if item.error_code
                    else "pending"
                )
            else:
                status = "pending"
            row_arms.append(
                {
                    "position": arm.position,
                    "run_id": str(run.pk) if run is not None else None,
                    "status": status,
                    "output": run.output if run is not None else None,
                    "scores": scores.get((arm.pk, example.pk), {}),
                }
            )
        rows.append(
            {
                "example": {
                    "id": str(example.pk),
                    "position": example.position,
                    "variables": example.variables,
                    "expected_output": example.expected_output,
                },
                "arms": row_arms,
            }
        )
    return rows


def experiment_compare(*, experiment: Experiment, baseline: int, candidate: int, scorer: str) -> dict[str, Any]:
    """The examples on which arm `candidate` did better, worse or the same as arm `baseline` by
    `scorer` (each with both values; examples either failed to score are left out), and the sign test.
    A ValidationFailed names a position or scorer the experiment does not have."""
    positions = {arm.position: arm for arm in experiment.arms.all()}
    problems = {}
    for field, position in (("baseline", baseline), ("candidate", candidate)):
        if position not in positions:
            problems[field] = [f"No arm at position {position} (the experiment has 0 to {len(positions) - 1})."]
    names = [spec["name"] for spec in experiment.scorers]
    if scorer not in names:
        problems["scorer"] = [f"The experiment has no scorer {scorer!r} (it has {', '.join(names)})."]
    if baseline == candidate and not problems:
        problems["candidate"] = ["Must differ from baseline."]
    if problems:
        raise ValidationFailed("Invalid comparison.", fields=problems)
    base_arm, cand_arm = positions[baseline], positions[candidate]
    values: dict[Any, dict[Any, Any]] = defaultdict(dict)
    for arm_id, example_id, value in Score.objects.filter(
        experiment=experiment, arm__in=[base_arm, cand_arm], name=scorer, value__isnull=False
    ).values_list("arm_id", "example_id", "value"):
        values[arm_id][example_id] = value
    both = [ex for ex in values[base_arm.pk] if ex in values[cand_arm.pk]]
    positions_by_id = dict(Example.objects.filter(pk__in=both).values_list("pk", "position"))
    groups: dict[str, list[dict[str, Any]]] = {stats.BETTER: [], stats.WORSE: [], "same": []}
    pairs = []
    for example_id in sorted(both, key=lambda ex: positions_by_id[ex]):
        base, cand = values[base_arm.pk][example_id], values[cand_arm.pk][example_id]
        pairs.append((base, cand))
        groups[stats.outcome(base, cand)].append(
            {
                "example_id": str(example_id),
                "position": positions_by_id[example_id],
                "baseline": base,
                "candidate": cand,
            }
        )
    result = stats.compare_paired(pairs)
    return {
        "baseline": baseline,
        "candidate": candidate,
        "scorer": scorer,
        "better": groups[stats.BETTER],
        "worse": groups[stats.WORSE],
        "same": groups["same"],
        "mean_delta": None if result.mean_delta is None else round(result.mean_delta, 6),
        "p_value": round(result.p_value, 6),
        "verdict": result.verdict,
    }


# Most experiments the admin's chart of scores over time reads (the latest ones).
HISTORY_EXPERIMENTS = 30


@dataclass(frozen=True)
class ScorePoint:
    """The mean score of one version in one completed experiment."""

    version: int
    at: datetime
    experiment_id: uuid.UUID
    experiment_name: str
    mean: float

    @property
    def mean_decimal(self) -> Decimal:
        return Decimal(str(self.mean))


def score_history(*, experiment: Experiment, scorer: str) -> list[ScorePoint]:
    """Mean `scorer` score per version in the latest completed experiments of the same prompt on the
    same dataset (this one included), oldest first: read from their stored summaries, one query."""
    latest = (
        Experiment.objects.filter(
            project_id=experiment.project_id,
            prompt_id=experiment.prompt_id,
            dataset_id=experiment.dataset_id,
            status=Experiment.Status.COMPLETED,
        )
        .order_by("-created_at")
        .values_list("pk", "name", "created_at", "summary")[:HISTORY_EXPERIMENTS]
    )
    points = []
    for pk, name, created_at, summary in reversed(list(latest)):
        for arm in (summary or {}).get("arms", []):
            mean = arm.get("scores", {}).get(scorer, {}).get("mean")
            if mean is not None:
                points.append(
                    ScorePoint(version=arm["version"], at=created_at, experiment_id=pk, experiment_name=name, mean=mean)
                )
    return points
