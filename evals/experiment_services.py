"""Writes for experiments: create one (a batch per prompt version over a dataset version), score it
once every batch completed, cancel it.

- `experiment_create` checks everything first (the dataset version and its examples, the versions,
  the scorers, that every example renders against every version: batch_create), then writes the
  experiment, its arms and their batches in one transaction; the batches dispatch after the commit.
- `experiment_score` is the `score_experiment` actor's work, sent when a batch of the experiment
  completes (evals.receivers) and by recovery (evals.recovery). Idempotent: a score that exists is
  not computed again (and the Score unique constraint keeps a racing scorer from writing it twice),
  and the experiment completes with one conditional UPDATE.
"""

import contextlib
import logging
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from accounts.models import APIKey, Project, User
from billing.models import CostLog
from evals import stats
from evals.models import Dataset, DatasetVersion, Example, Experiment, ExperimentArm, Score
from evals.scorers.base import ScoreContext, ScoreInput, ScoringFailed
from evals.scorers.registry import scorer_build, scorer_specs_check
from llmops.errors import Conflict, FieldErrors, NotFound, ValidationFailed
from llmops.money import money_str
from prompts import selectors as prompt_selectors
from prompts import services as prompt_services
from prompts.models import Prompt, PromptVersion
from runs import batch_services
from runs.batch_files import BatchRow
from runs.models import Batch, BatchItem, Run

logger = logging.getLogger(__name__)

MAX_ARMS = 10


def _ref_filter(ref: str) -> dict[str, Any]:
    try:
        return {"pk": uuid.UUID(str(ref))}
    except ValueError:
        return {"name": ref}


def dataset_check(*, project: Project, ref: str, field: str = "dataset") -> Dataset:
    """The project's dataset by name or id, or a ValidationFailed naming `field`."""
    dataset = Dataset.objects.filter(project=project, **_ref_filter(ref)).first() if ref else None
    if dataset is None:
        raise ValidationFailed("Dataset not found.", fields={field: ["No such dataset."]})
    return dataset


def version_examples(version: DatasetVersion) -> QuerySet[Example]:
    """The examples dataset version N holds: added by N, not removed by N; in position order."""
    number = version.number
    return (
        Example.objects.filter(dataset_id=version.dataset_id, added_in__lte=number)
        .filter(Q(removed_in__isnull=True) | Q(removed_in__gt=number))
        .order_by("position")
    )


def _dataset_version_check(dataset: Dataset, number: int | None) -> DatasetVersion:
    number = dataset.latest_version_number if number is None else number
    version = DatasetVersion.objects.filter(dataset=dataset, number=number).first() if number else None
    if version is None:
        message = (
            "The dataset has no versions yet." if not number else f"Version {number} of the dataset does not exist."
        )
        raise ValidationFailed(message, fields={"dataset_version": ["No such version of this dataset."]})
    if not version_examples(version).exists():
        raise ValidationFailed(
            f"Version {number} of the dataset has no examples.",
            fields={"dataset_version": ["This version holds no examples."]},
        )
    return version


def _versions_check(prompt: Prompt, refs: Any) -> list[tuple[str, PromptVersion]]:
    """(ref as given, version) per ref, or a ValidationFailed keyed `versions.<index>`."""
    if not isinstance(refs, list) or not refs:
        raise ValidationFailed("Name at least one version.", fields={"versions": ["A non-empty list of versions."]})
    if len(refs) > MAX_ARMS:
        raise ValidationFailed("Too many versions.", fields={"versions": [f"At most {MAX_ARMS} versions."]})
    problems: FieldErrors = {}
    resolved: list[tuple[str, PromptVersion]] = []
    seen: dict[uuid.UUID, int] = {}
    for index, ref in enumerate(refs):
        where = f"versions.{index}"
        if isinstance(ref, bool) or not isinstance(ref, int | str) or ref == "":
            problems[where] = ["A version number or a label."]
            continue
        text = str(ref).strip()
        number = int(text) if text.isdigit() else None
        try:
            version = prompt_selectors.version_resolve(
                prompt=prompt, version=number, label=None if number is not None else text
            )
        except (ValidationFailed, NotFound) as exc:
            problems[where] = [exc.message]
            continue
        if version.pk in seen:
            problems[where] = [f"Version {version.number} is listed twice (also versions.{seen[version.pk]})."]
            continue
        seen[version.pk] = index
        resolved.append((text, version))
    if problems:
        raise ValidationFailed("Invalid versions.", fields=problems)
    return resolved


def experiment_create(
    *,
    project: Project,
    created_by: User | None,
    api_key: APIKey | None,
    prompt: str,
    dataset: str,
    versions: list[Any],
    scorers: list[Any],
    dataset_version: int | None = None,
    params: dict[str, Any] | None = None,
    concurrency: int = batch_services.DEFAULT_CONCURRENCY,
    name: str = "",
) -> Experiment:
    """Runs each of `versions` (numbers or labels; the first is the baseline) over the examples of
    the dataset version (default: its latest), one batch per version, to be scored by `scorers`.

    Every version must render every example: a bad one creates nothing (a 400 naming
    `versions.<index>` and the example). Labels are resolved now; moving one later changes nothing."""
    try:
        found = prompt_selectors.prompt_get(project=project, ref=prompt)
    except NotFound:
        raise ValidationFailed("Prompt not found.", fields={"prompt": ["No such prompt."]}) from None
    data = dataset_check(project=project, ref=dataset)
    data_version = _dataset_version_check(data, dataset_version)
    arms = _versions_check(found, versions)
    specs = scorer_specs_check(scorers)
    overrides = prompt_services.validate_params(params or {})
    if not batch_services.MIN_CONCURRENCY <= concurrency <= batch_services.MAX_CONCURRENCY:
        raise ValidationFailed(
            "Invalid concurrency.",
            fields={"concurrency": [f"Must be between 1 and {batch_services.MAX_CONCURRENCY}."]},
        )
    examples = list(version_examples(data_version).only("pk", "position", "variables"))

    with transaction.atomic():
        experiment = Experiment.objects.create(
            project=project,
            created_by=created_by,
            api_key=api_key,
            prompt=found,
            dataset=data,
            dataset_version=data_version,
            name=name,
            scorers=specs,
            params=overrides,
            concurrency=concurrency,
        )
        for position, (ref, version) in enumerate(arms):
            rows = (
                BatchRow(line=example.position, variables=example.variables, key=str(example.pk))
                for example in examples
            )
            try:
                batch, _ = batch_services.batch_create(
                    project=project,
                    created_by=created_by,
                    api_key=api_key,
                    prompt=str(found.pk),
                    version=version.number,
                    items=rows,
                    concurrency=concurrency,
                    params=overrides,
                    name=f"{name or 'experiment'} · v{version.number}"[:200],
                    metadata={"experiment": str(experiment.pk), "arm": position},
                )
            except ValidationFailed as exc:
                # items.<position>.<field> -> versions.<index>.examples.<position>.<field>
                fields = {
                    f"versions.{position}.examples.{key.removeprefix('items.')}"
                    if key.startswith("items.")
                    else f"versions.{position}": messages
                    for key, messages in exc.fields.items()
                }
                raise ValidationFailed(
                    f"Version {version.number}: {exc.message}", fields=fields, code=exc.code
                ) from None
            ExperimentArm.objects.create(
                experiment=experiment, position=position, ref=ref, prompt_version=version, batch=batch
            )
    logger.info("experiment created", extra={"experiment_id": str(experiment.pk), "arms": len(arms)})
    return experiment


def experiment_cancel(*, experiment: Experiment) -> Experiment:
    """Cancels a running experiment and its batches (runs already running finish). 409 once it has
    completed, failed or been canceled."""
    now = timezone.now()
    with transaction.atomic():
        # Conditional: a scorer finishing meanwhile wins, or this does; never both.
        updated = Experiment.objects.filter(pk=experiment.pk, status__in=Experiment.ACTIVE).update(
            status=Experiment.Status.CANCELED, finished_at=now, updated_at=now
        )
        if updated:
            for batch in Batch.objects.filter(experiment_arm__experiment=experiment, status__in=Batch.ACTIVE):
                with contextlib.suppress(Conflict):  # it completed meanwhile
                    batch_services.batch_cancel(batch=batch)
    experiment.refresh_from_db()
    if not updated:
        raise Conflict(
            f"The experiment is {experiment.status}; only a running experiment can be canceled.",
            code="not_cancelable",
        )
    logger.info("experiment canceled", extra={"experiment_id": str(experiment.pk)})
    return experiment


def _run_error(item: BatchItem | None) -> str:
    if item is None:
        return "No run: the batch has no item for this example."
    run = item.run
    if run is None:
        return f"No run was made: {item.error_message or item.error_code or 'not dispatched'}."
    detail = ": ".join(part for part in (run.error_code, run.error_message) if part)
    return f"The run {run.pk} {run.status}" + (f" ({detail})." if detail else ".")


def _fail(experiment_id: Any, message: str) -> None:
    now = timezone.now()
    Experiment.objects.filter(pk=experiment_id, status__in=Experiment.ACTIVE).update(
        status=Experiment.Status.FAILED, error_message=message, finished_at=now, updated_at=now
    )
    logger.warning("experiment failed", extra={"experiment_id": str(experiment_id)})


def experiment_score(*, experiment_id: Any) -> bool:
    """Scores the experiment once every arm's batch completed, stores the summary and completes it.
    True when this call completed it. Does nothing while a batch is still running, nor for an
    experiment that is finished; a batch canceled behind its back fails it.

    Scores already stored are skipped, so a retry after a crash only computes the rest. A scorer
    that cannot score an output (ScoringFailed) or a run that did not succeed gives a Score with no
    value and the reason in `error`."""
    experiment = (
        Experiment.objects.select_related("project", "created_by", "api_key", "dataset_version")
        .filter(pk=experiment_id, status__in=Experiment.ACTIVE)
        .first()
    )
    if experiment is None:
        return False
    arms = list(experiment.arms.select_related("batch", "prompt_version").order_by("position"))
    statuses = {arm.batch.status if arm.batch else None for arm in arms}
    if statuses & {Batch.Status.QUEUED, Batch.Status.RUNNING}:
        return False  # the last batch to complete sends the message again
    if statuses != {Batch.Status.COMPLETED}:
        _fail(experiment.pk, "A batch of the experiment was canceled before it completed.")
        return False
    now = timezone.now()
    # Conditional, so recovery can tell a stuck scoring from a fresh one (updated_at).
    Experiment.objects.filter(pk=experiment.pk, status=Experiment.Status.RUNNING).update(
        status=Experiment.Status.SCORING, updated_at=now
    )

    examples = list(version_examples(experiment.dataset_version))
    built = [(spec["name"], *scorer_build(spec)) for spec in experiment.scorers]
    context = ScoreContext(project=experiment.project, created_by=experiment.created_by, api_key=experiment.api_key)
    done = set(Score.objects.filter(experiment=experiment).values_list("arm_id", "example_id", "name"))
    for arm in arms:
        assert arm.batch is not None
        items = {item.key: item for item in BatchItem.objects.filter(batch=arm.batch).select_related("run")}
        new: list[Score] = []
        for example in examples:
            item = items.get(str(example.pk))
            run = item.run if item is not None else None
            for name, scorer, threshold in built:
                if (arm.pk, example.pk, name) in done:
                    continue
                score = Score(
                    project=experiment.project,
                    run=run,
                    name=name,
                    experiment=experiment,
                    arm=arm,
                    example=example,
                    created_by=experiment.created_by,
                )
                if run is None or run.status != Run.Status.SUCCEEDED:
                    score.error = _run_error(item)
                else:
                    _score_one(score, scorer, threshold, run=run, example=example, context=context)
                new.append(score)
        # A racing scorer's rows win; ours are dropped by the unique constraint.
        Score.objects.bulk_create(new, ignore_conflicts=True)

    summary = experiment_summary(experiment=experiment)
    now = timezone.now()
    # Conditional on the status: of two scorers racing, one completes it; a cancel meanwhile wins.
    completed = Experiment.objects.filter(pk=experiment.pk, status=Experiment.Status.SCORING).update(
        status=Experiment.Status.COMPLETED, summary=summary, finished_at=now, updated_at=now
    )
    if completed:
        logger.info("experiment completed", extra={"experiment_id": str(experiment.pk)})
    return bool(completed)


def _score_one(
    score: Score, scorer: Any, threshold: float, *, run: Run, example: Example, context: ScoreContext
) -> None:
    item = ScoreInput(
        output=run.output,
        expected_output=example.expected_output,
        reference=example.reference,
        variables=example.variables if isinstance(example.variables, dict) else {},
        tags=list(example.tags) if isinstance(example.tags, list) else [],
    )
    try:
        result = scorer.score(item, context=context)
    except ScoringFailed as exc:
        score.error = str(exc) or "The scorer could not score this output."
        score.judge_run_id = exc.judge_run_id  # a judge that answered out of format was still charged
        return
    except Exception as exc:  # a custom scorer's bug: recorded on the score, the experiment goes on
        logger.exception("scorer crashed", extra={"scorer": score.name, "run_id": str(run.pk)})
        score.error = f"The scorer failed: {type(exc).__name__}."
        return
    value = float(result.value)
    if not 0 <= value <= 1:
        score.error = f"The scorer returned {value}, outside [0, 1]."
        return
    score.value = value
    score.passed = result.passed if result.passed is not None else value >= threshold
    score.reason = result.reason
    score.judge_run_id = result.judge_run_id


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def experiment_summary(*, experiment: Experiment) -> dict[str, Any]:
    """The result table (Experiment.summary) from the arms' runs, cost entries and scores:
    per arm its runs, tokens, cost, latency and per scorer mean / median / pass rate, then each
    candidate compared with the baseline (arm 0) on each scorer (evals.stats)."""
    arms = list(experiment.arms.select_related("prompt_version").order_by("position"))
    names = [spec["name"] for spec in experiment.scorers]
    # (arm, name) -> example -> (value, passed); errors counted apart.
    values: dict[tuple[Any, str], dict[Any, tuple[float, bool | None]]] = defaultdict(dict)
    errors: dict[tuple[Any, str], int] = defaultdict(int)
    for arm_id, example_id, name, value, passed in Score.objects.filter(experiment=experiment).values_list(
        "arm_id", "example_id", "name", "value", "passed"
    ):
        if value is None:
            errors[(arm_id, name)] += 1
        else:
            values[(arm_id, name)][example_id] = (value, passed)

    summary_arms = []
    for arm in arms:
        assert arm.batch_id is not None  # every arm gets its batch when created
        runs = list(
            BatchItem.objects.filter(batch_id=arm.batch_id).values_list(
                "run__status", "run__prompt_tokens", "run__completion_tokens", "run__total_tokens", "run__latency_ms"
            )
        )
        succeeded = [row for row in runs if row[0] == Run.Status.SUCCEEDED]
        latencies = [row[4] for row in succeeded if row[4] is not None]
        cost = CostLog.objects.filter(run__batch_item__batch_id=arm.batch_id).aggregate(total=Sum("total_cost"))[
            "total"
        ]
        scores = {}
        for name in names:
            found = values.get((arm.pk, name), {})
            numbers = [value for value, _ in found.values()]
            passes = [bool(passed) for _, passed in found.values() if passed is not None]
            scores[name] = {
                "mean": _round(stats.mean(numbers)),
                "median": _round(stats.median(numbers)),
                "pass_rate": _round(stats.pass_rate(passes)),
                "count": len(numbers),
                "errors": errors.get((arm.pk, name), 0),
            }
        summary_arms.append(
            {
                "position": arm.position,
                "ref": arm.ref,
                "version": arm.prompt_version.number,
                "runs": len(runs),
                "succeeded": len(succeeded),
                "failed": len(runs) - len(succeeded),
                "tokens": {
                    "prompt": sum(row[1] or 0 for row in runs),
                    "completion": sum(row[2] or 0 for row in runs),
                    "total": sum(row[3] or 0 for row in runs),
                },
                "cost": money_str(Decimal(cost or 0)),
                "latency_ms": {"p50": stats.percentile(latencies, 0.50), "p95": stats.percentile(latencies, 0.95)},
                "scores": scores,
            }
        )

    comparisons = []
    baseline = arms[0] if arms else None
    for arm in arms[1:]:
        assert baseline is not None
        for name in names:
            base_values = values.get((baseline.pk, name), {})
            cand_values = values.get((arm.pk, name), {})
            pairs = [(base_values[ex][0], cand_values[ex][0]) for ex in base_values if ex in cand_values]
            result = stats.compare_paired(pairs)
            comparisons.append(
                {
                    "baseline": baseline.position,
                    "candidate": arm.position,
                    "scorer": name,
                    "better": result.better,
                    "worse": result.worse,
                    "same": result.same,
                    "mean_delta": _round(result.mean_delta),
                    "p_value": _round(result.p_value),
                    "verdict": result.verdict,
                }
            )
    return {
        "dataset_version": experiment.dataset_version.number,
        "example_count": version_examples(experiment.dataset_version).count(),
        "arms": summary_arms,
        "comparisons": comparisons,
    }
