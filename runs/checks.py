"""Checks shared by runs and batches before they write anything (check first, then do)."""

import uuid

from accounts.models import Project
from llmops.errors import NotFound, ValidationFailed
from prompts import selectors as prompt_selectors
from prompts.models import PromptVersion

DEFAULT_LABEL = "production"


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
    prompt has it, else the latest."""
    if prompt_version_id is not None:
        found = (
            PromptVersion.objects.select_related("prompt").filter(pk=prompt_version_id, prompt__project=project).first()
        )
        if found is None:
            raise ValidationFailed(
                "Prompt version not found.", fields={"prompt_version_id": ["No such prompt version."]}
            )
        return found
    if not prompt_ref:
        raise ValidationFailed("Which prompt?", fields={"prompt": ["This field is required."]})
    try:
        prompt = prompt_selectors.prompt_get(project=project, ref=prompt_ref)
    except NotFound:
        raise ValidationFailed("Prompt not found.", fields={"prompt": ["No such prompt."]}) from None
    if version is None and label is None:
        # With neither, a deployed prompt runs its `production` version, else the latest.
        has_production = prompt.labels.filter(name=DEFAULT_LABEL).exists()
        label = DEFAULT_LABEL if has_production else None
    return prompt_selectors.version_resolve(prompt=prompt, version=version, label=label)
