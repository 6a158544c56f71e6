"""Reads for prompts. Every lookup is scoped to its project: another user's prompt is "not found"."""

import uuid

from django.db.models import Prefetch, QuerySet

from accounts.models import Project
from llmops.errors import NotFound, ValidationFailed
from prompts.models import LATEST_LABEL, LabelMove, Prompt, PromptLabel, PromptVersion


def prompt_list(*, project: Project, include_archived: bool = False) -> QuerySet[Prompt]:
    prompts = Prompt.objects.filter(project=project).prefetch_related(
        Prefetch("labels", queryset=PromptLabel.objects.select_related("version"))
    )
    if not include_archived:
        prompts = prompts.filter(archived_at__isnull=True)
    return prompts.order_by("name")


def prompt_get(*, project: Project, ref: str) -> Prompt:
    """A prompt by UUID or by name."""
    lookup: dict[str, object]
    try:
        lookup = {"pk": uuid.UUID(str(ref))}
    except ValueError:
        lookup = {"name": ref}
    prompt = prompt_list(project=project, include_archived=True).filter(**lookup).first()
    if prompt is None:
        raise NotFound("Prompt not found.")
    return prompt


def version_list(*, prompt: Prompt) -> QuerySet[PromptVersion]:
    return PromptVersion.objects.filter(prompt=prompt).select_related("created_by").order_by("-number")


def version_get(*, prompt: Prompt, number: int) -> PromptVersion:
    version = version_list(prompt=prompt).filter(number=number).first()
    if version is None:
        raise NotFound(f"Version {number} of this prompt does not exist.")
    return version


def version_resolve(*, prompt: Prompt, version: int | None = None, label: str | None = None) -> PromptVersion:
    """The version a caller means: a number, a label, or `latest` (the highest number)."""
    if version is not None and label is not None:
        raise ValidationFailed("Give a version or a label, not both.", fields={"label": ["Not with version."]})
    if version is not None:
        found = version_list(prompt=prompt).filter(number=version).first()
        if found is None:
            raise ValidationFailed(f"Version {version} does not exist.", fields={"version": ["No such version."]})
        return found
    if label is None or label == LATEST_LABEL:
        latest = version_list(prompt=prompt).first()
        if latest is None:
            raise NotFound("The prompt has no versions.")
        return latest
    target = PromptLabel.objects.filter(prompt=prompt, name=label).select_related("version").first()
    if target is None:
        raise ValidationFailed(f"Label {label!r} does not exist.", fields={"label": ["No such label on this prompt."]})
    return target.version


def label_list(*, prompt: Prompt) -> QuerySet[PromptLabel]:
    return PromptLabel.objects.filter(prompt=prompt).select_related("version").order_by("name")


def label_history(*, prompt: Prompt) -> QuerySet[LabelMove]:
    return (
        LabelMove.objects.filter(prompt=prompt)
        .select_related("from_version", "to_version", "moved_by")
        .order_by("-created_at")
    )
