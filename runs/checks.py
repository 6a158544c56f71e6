"""Checks shared by runs and batches before they write anything (check first, then do)."""

import uuid
from dataclasses import dataclass

from accounts.models import Project
from llmops.errors import NotFound, ValidationFailed
from prompts import selectors as prompt_selectors
from prompts import splits
from prompts.models import LATEST_LABEL, Prompt, PromptVersion

DEFAULT_LABEL = "production"


@dataclass(frozen=True)
class PickedVersion:
    """The version a run executes, the label it was resolved through ("" for none) and whether the
    label's split picked it (runs.models.Run.label, split_arm)."""

    version: PromptVersion
    label: str = ""
    split_arm: bool = False


def _prompt_and_selector(
    *, project: Project, prompt_ref: str | None, version: int | None, label: str | None
) -> tuple[Prompt, str | None]:
    if not prompt_ref:
        raise ValidationFailed("Which prompt?", fields={"prompt": ["This field is required."]})
    try:
        prompt = prompt_selectors.prompt_get(project=project, ref=prompt_ref)
    except NotFound:
        raise ValidationFailed("Prompt not found.", fields={"prompt": ["No such prompt."]}) from None
    if version is None and label is None:
        # With neither, a deployed prompt runs its `production` version, else the latest.
        has_production = prompt_selectors.label_get(prompt=prompt, name=DEFAULT_LABEL) is not None
        label = DEFAULT_LABEL if has_production else None
    return prompt, label


def _version_by_id(*, project: Project, prompt_version_id: uuid.UUID) -> PromptVersion:
    found = PromptVersion.objects.select_related("prompt").filter(pk=prompt_version_id, prompt__project=project).first()
    if found is None:
        raise ValidationFailed("Prompt version not found.", fields={"prompt_version_id": ["No such prompt version."]})
    return found


def prompt_version_check(
    *,
    project: Project,
    prompt_ref: str | None,
    prompt_version_id: uuid.UUID | None,
    version: int | None,
    label: str | None,
) -> PromptVersion:
    """The version a run (or a batch) executes, or a ValidationFailed naming the field: by id, or a
    prompt (id or name) with a version number or a label; with neither, `production` when the
    prompt has it, else the latest. A label's own version, whatever its split: a batch (or an
    experiment) runs one version; single runs are split by run_version_check."""
    if prompt_version_id is not None:
        return _version_by_id(project=project, prompt_version_id=prompt_version_id)
    prompt, label = _prompt_and_selector(project=project, prompt_ref=prompt_ref, version=version, label=label)
    return prompt_selectors.version_resolve(prompt=prompt, version=version, label=label)


def run_version_check(
    *,
    project: Project,
    prompt_ref: str | None,
    prompt_version_id: uuid.UUID | None,
    version: int | None,
    label: str | None,
    split_key: str | None,
) -> PickedVersion:
    """As prompt_version_check, for one run: a label with an A/B split gets the arm `split_key` hashes
    to (at random with no key; prompts.splits), and the label it went through is returned with it."""
    if prompt_version_id is not None:
        return PickedVersion(version=_version_by_id(project=project, prompt_version_id=prompt_version_id))
    prompt, label = _prompt_and_selector(project=project, prompt_ref=prompt_ref, version=version, label=label)
    if version is not None or label is None or label == LATEST_LABEL:
        found = prompt_selectors.version_resolve(prompt=prompt, version=version, label=label)
        return PickedVersion(version=found, label=label or "")
    picked = splits.label_version_pick(prompt=prompt, label=label, split_key=split_key)
    if picked is None:
        raise ValidationFailed(f"Label {label!r} does not exist.", fields={"label": ["No such label on this prompt."]})
    return PickedVersion(version=picked.version, label=label, split_arm=picked.split)
