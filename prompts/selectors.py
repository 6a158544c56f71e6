"""Reads for prompts. Every lookup is scoped to its project: another user's prompt is "not found"."""

import copy
import uuid
from dataclasses import dataclass

from django.db.models import Prefetch, QuerySet

from accounts.models import Project
from llmops import config_cache
from llmops.config_cache import ProcessCache
from llmops.errors import NotFound, ValidationFailed
from prompts.models import LATEST_LABEL, LabelMove, Prompt, PromptLabel, PromptVersion


def prompt_list(*, project: Project, include_archived: bool = False) -> QuerySet[Prompt]:
    prompts = Prompt.objects.filter(project=project).prefetch_related(
        Prefetch("labels", queryset=PromptLabel.objects.select_related("version"))
    )
    if not include_archived:
        prompts = prompts.filter(archived_at__isnull=True)
    return prompts.order_by("name")


def _ref_lookup(ref: str, prefix: str = "") -> dict[str, object]:
    """A prompt's `ref` as a filter: its UUID if it is one, else its name."""
    try:
        return {f"{prefix}pk": uuid.UUID(str(ref))}
    except ValueError:
        return {f"{prefix}name": ref}


# A run of a prompt reads the prompt, its label and the label's version: this process keeps them
# (llmops/config_cache.py; prompts.signals invalidates them on any write to a prompt or a label, so a
# label moved is seen by the next run in every process). Versions never change.
prompt_rows: ProcessCache[Prompt] = ProcessCache("prompts")
label_rows: ProcessCache[PromptLabel | None] = ProcessCache("prompt labels")
version_rows: ProcessCache[PromptVersion] = ProcessCache("prompt versions")


def prompt_get(*, project: Project, ref: str) -> Prompt:
    """A prompt by UUID or by name (the caller's own copy), with its labels."""
    token = config_cache.generation()
    prompt = prompt_rows.get((project.pk, ref), token)
    if not isinstance(prompt, Prompt):
        prompt = prompt_list(project=project, include_archived=True).filter(**_ref_lookup(ref)).first()
        if prompt is None:
            raise NotFound("Prompt not found.")
        prompt_rows.put((project.pk, ref), token, prompt)
    return copy.copy(prompt)


def label_get(*, prompt: Prompt, name: str) -> PromptLabel | None:
    """The prompt's label `name` with its version, or None. Shared with other calls: read it only."""
    return label_rows.fetch(
        (prompt.pk, name),
        lambda: PromptLabel.objects.filter(prompt=prompt, name=name).select_related("version__prompt").first(),
    )


def version_by_number(*, prompt: Prompt, number: int) -> PromptVersion | None:
    """Version `number` of the prompt with its prompt and creator, or None. Shared: read it only."""
    token = config_cache.generation()
    found = version_rows.get((prompt.pk, number), token)
    if not isinstance(found, PromptVersion):
        found = (
            PromptVersion.objects.select_related("prompt", "created_by").filter(prompt=prompt, number=number).first()
        )
        if found is None:
            return None  # not kept: the number may be made next
        version_rows.put((prompt.pk, number), token, found)
    return found


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
        found = version_by_number(prompt=prompt, number=version)
        if found is None:
            raise ValidationFailed(f"Version {version} does not exist.", fields={"version": ["No such version."]})
        return found
    if label is None or label == LATEST_LABEL:
        latest = version_list(prompt=prompt).first()
        if latest is None:
            raise NotFound("The prompt has no versions.")
        return latest
    target = label_get(prompt=prompt, name=label)
    if target is None:
        raise ValidationFailed(f"Label {label!r} does not exist.", fields={"label": ["No such label on this prompt."]})
    return target.version


@dataclass(frozen=True)
class ResolvedRef:
    """A resolved version, not loaded: its id, and the two things its API shape shows that can change
    although the version cannot (the prompt's name, in the admin; its creator's username)."""

    version_id: uuid.UUID
    prompt_name: str
    created_by: str | None


def version_resolve_ref(
    *, project: Project, ref: str, version: int | None = None, label: str | None = None
) -> ResolvedRef:
    """What prompt `ref` at `version`, `label` or (neither) `latest` resolves to, in one query that
    reads no version content (a cache's revalidation needs no more). Not both `version` and `label`.

    A miss is a NotFound: of the prompt (as prompt_get, so another project's prompt looks the same as
    none), or naming `version` or `label`; telling which costs a query more.
    """
    if version is not None and label is not None:
        raise ValidationFailed("Give a version or a label, not both.", fields={"label": ["Not with version."]})
    columns = ("pk", "prompt__name", "created_by__username")
    versions = PromptVersion.objects.filter(prompt__project=project, **_ref_lookup(ref, "prompt__"))
    if version is not None:
        row = versions.filter(number=version).values_list(*columns).first()
    elif label is None or label == LATEST_LABEL:
        # The highest number: a backward scan of promptversion_prompt_number_uniq.
        row = versions.order_by("-number").values_list(*columns).first()
    else:
        row = (
            PromptLabel.objects.filter(prompt__project=project, name=label, **_ref_lookup(ref, "prompt__"))
            .values_list("version_id", "prompt__name", "version__created_by__username")
            .first()
        )
    if row is not None:
        return ResolvedRef(version_id=row[0], prompt_name=row[1], created_by=row[2])
    prompt_get(project=project, ref=ref)  # raises when the prompt is what is missing
    if version is not None:
        raise NotFound(f"Version {version} of this prompt does not exist.", fields={"version": ["No such version."]})
    if label is None or label == LATEST_LABEL:
        raise NotFound("The prompt has no versions.")
    raise NotFound(f"Label {label!r} does not exist.", fields={"label": ["No such label on this prompt."]})


def version_get_by_id(*, project: Project, version_id: uuid.UUID) -> PromptVersion:
    """A version of the project's, with its prompt and creator (for a ResolvedRef just resolved)."""
    version = (
        PromptVersion.objects.filter(pk=version_id, prompt__project=project)
        .select_related("prompt", "created_by")
        .first()
    )
    if version is None:
        raise NotFound("Version not found.")
    return version


def label_list(*, prompt: Prompt) -> QuerySet[PromptLabel]:
    return PromptLabel.objects.filter(prompt=prompt).select_related("version").order_by("name")


def label_history(*, prompt: Prompt) -> QuerySet[LabelMove]:
    return (
        LabelMove.objects.filter(prompt=prompt)
        .select_related("from_version", "to_version", "moved_by")
        .order_by("-created_at")
    )
