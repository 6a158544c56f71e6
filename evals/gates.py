"""Gated labels: moving a gated label needs a passing experiment first.

A LabelGate on (prompt, label) names a dataset, a scorer and a threshold. `label_gate_check` is
registered with prompts.label_gates (EvalsConfig.ready), so prompts.services.label_move calls it under
the prompt's row lock before the label moves to another version. The move is allowed when a
COMPLETED experiment of the prompt on the dataset's LATEST version has the target version as an arm
whose mean score of the gate's scorer is at least the threshold and, when the label's current
version was that experiment's baseline, whose comparison with it is not `worse`. Otherwise a 409
`evaluation_required` says what is needed and the best that was found. A gate is set and removed
by an admin, as protected labels are.
"""

from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from accounts.models import Project, Role, User
from accounts.services import role_check
from evals import stats
from evals.experiment_services import dataset_check
from evals.models import Experiment, LabelGate
from evals.scorers.registry import scorer_classes
from llmops.errors import Conflict, FieldErrors, NotFound, ValidationFailed
from prompts.models import LATEST_LABEL, Prompt, PromptLabel, PromptVersion

# Experiments looked at per check, newest first: enough history, and a bound on the check's work.
_EXPERIMENTS_CHECKED = 50


def label_gate_list(*, prompt: Prompt) -> QuerySet[LabelGate]:
    return LabelGate.objects.filter(prompt=prompt).select_related("dataset", "created_by").order_by("label")


def label_gate_set(
    *,
    project: Project,
    prompt: Prompt,
    label: str,
    dataset: str,
    scorer: str,
    threshold: float,
    created_by: User | None,
    role: str | None,
) -> LabelGate:
    """Gates `label` of `prompt` (replacing its gate if it has one). Admins only (`role`: the caller's
    role in the project; None for staff tooling). The label need not exist yet: its first move is gated too."""
    role_check(role=role, minimum=Role.ADMIN, action=f"gating the label {label!r}")
    problems: FieldErrors = {}
    if label == LATEST_LABEL:
        problems["label"] = ["'latest' is reserved and never moves."]
    if scorer not in scorer_classes():
        problems["scorer"] = [f"No scorer named {scorer!r} (known: {', '.join(sorted(scorer_classes()))})."]
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        problems["threshold"] = ["A number from 0 to 1."]
    if problems:
        raise ValidationFailed("Invalid gate.", fields=problems)
    found = dataset_check(project=project, ref=dataset)
    with transaction.atomic():
        gate, _ = LabelGate.objects.update_or_create(
            prompt=prompt,
            label=label,
            defaults={
                "project": project,
                "dataset": found,
                "scorer": scorer,
                "threshold": float(threshold),
                "created_by": created_by,
            },
        )
    return gate


def label_gate_remove(*, prompt: Prompt, label: str, role: str | None) -> None:
    """Removes the gate of `label`; admins only. 404 when the label has none."""
    role_check(role=role, minimum=Role.ADMIN, action=f"removing the gate of the label {label!r}")
    deleted, _ = LabelGate.objects.filter(prompt=prompt, label=label).delete()
    if not deleted:
        raise NotFound(f"The label {label!r} has no gate.")


def _arm_verdict(summary: dict[str, Any], position: int, scorer: str) -> str | None:
    for comparison in summary.get("comparisons", []):
        if comparison["candidate"] == position and comparison["scorer"] == scorer:
            return str(comparison["verdict"])
    return None


def label_gate_check(*, prompt: Prompt, label: str, version: PromptVersion) -> None:
    """Raises Conflict (409, `evaluation_required`) unless a passing experiment allows moving `label`
    of `prompt` to `version` (the module docstring says what passes). No gate: nothing to check."""
    gate = LabelGate.objects.filter(prompt=prompt, label=label).select_related("dataset").first()
    if gate is None:
        return
    latest = gate.dataset.latest_version_number
    current_id = PromptLabel.objects.filter(prompt=prompt, name=label).values_list("version_id", flat=True).first()
    experiments = (
        Experiment.objects.filter(
            prompt=prompt,
            dataset=gate.dataset,
            dataset_version__number=latest,
            status=Experiment.Status.COMPLETED,
            arms__prompt_version=version,
        )
        .prefetch_related("arms")
        .order_by("-created_at")[:_EXPERIMENTS_CHECKED]
    )
    best: float | None = None
    worse_than_current = False
    for experiment in experiments:
        arms = {arm.prompt_version_id: arm for arm in experiment.arms.all()}
        arm = arms.get(version.pk)
        summary = experiment.summary or {}
        arm_summary = next((a for a in summary.get("arms", []) if arm and a["position"] == arm.position), None)
        if arm is None or arm_summary is None:
            continue
        mean = (arm_summary.get("scores", {}).get(gate.scorer) or {}).get("mean")
        if mean is None:
            continue
        baseline = next((a for a in arms.values() if a.position == 0), None)
        from_baseline = current_id is not None and baseline is not None and baseline.prompt_version_id == current_id
        if from_baseline and arm.position != 0 and _arm_verdict(summary, arm.position, gate.scorer) == stats.WORSE:
            worse_than_current = True
            continue
        if mean >= gate.threshold:
            return
        best = mean if best is None else max(best, mean)
    needed = (
        f"Moving {label!r} to version {version.number} needs a completed experiment on dataset "
        f"{gate.dataset.name!r} (its latest version, {latest}) in which version {version.number} has a mean "
        f"{gate.scorer} score of at least {gate.threshold:g}"
    )
    if best is not None:
        found = f"the best found is {best:g}"
    elif worse_than_current:
        found = "the experiments found it significantly worse than the label's current version"
    else:
        found = "none was found"
    if worse_than_current and best is not None:
        found += " (and one found it significantly worse than the label's current version)"
    raise Conflict(
        f"{needed}, and not significantly worse than the label's current version; {found}.",
        code="evaluation_required",
    )
