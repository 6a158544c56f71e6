from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from llmops.models import BaseModel

# Not a stored label: always the highest version number.
LATEST_LABEL = "latest"


class Prompt(BaseModel):
    """A named prompt template of a project; its content lives in immutable versions."""

    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="prompts")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    name = models.SlugField(max_length=100)
    description = models.TextField(blank=True, default="")
    archived_at = models.DateTimeField(null=True, blank=True)
    # Highest version number handed out; bumped under a row lock so numbers have no gaps or duplicates.
    latest_version_number = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="prompt_project_name_uniq"),
        ]

    def __str__(self) -> str:
        return self.name


class ImmutableVersionError(Exception):
    """A saved prompt version was about to be changed."""


class PromptVersion(BaseModel):
    """One immutable, numbered revision of a prompt."""

    class Kind(models.TextChoices):
        TEXT = "text", "Text"
        CHAT = "chat", "Chat messages"

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    template = models.TextField(blank=True, default="", help_text="Text template (kind=text).")
    messages = models.JSONField(
        default=list, blank=True, help_text='Chat messages (kind=chat): [{"role": ..., "content": ...}]'
    )
    variables = models.JSONField(
        default=dict, blank=True, help_text='{"name": {"type": "string", "required": true, "default": ...}}'
    )
    model = models.CharField(max_length=200, help_text="<provider>/<model id>, e.g. local/smollm2")
    params = models.JSONField(default=dict, blank=True, help_text="Model parameters: temperature, max_tokens, ...")
    commit_message = models.CharField(max_length=500, blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")

    class Meta:
        ordering = ["prompt", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["prompt", "number"], name="promptversion_prompt_number_uniq"),
            models.CheckConstraint(condition=Q(number__gte=1), name="promptversion_number_positive"),
            models.CheckConstraint(condition=Q(kind__in=["text", "chat"]), name="promptversion_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.prompt.name} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ImmutableVersionError(f"Prompt version {self.pk} is immutable; create a new version.")
        super().save(*args, **kwargs)


class PromptLabel(BaseModel):
    """A movable name (production, staging, ...) pointing at one version of the same prompt."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="labels")
    name = models.SlugField(max_length=50)
    # The label's main version: what a batch, an experiment, a render and the resolve endpoint (ETag)
    # take, and one of the arms of a split when it has one.
    version = models.ForeignKey(PromptVersion, on_delete=models.RESTRICT, related_name="labels")
    # An A/B split of the label's runs: [{"version": <number>, "weight": <percent>}, ...], [] for none
    # (prompts.services.label_split_set states the rules; prompts.splits picks an arm). A JSON field,
    # not a model of arms: a split is at most a few arms, always replaced as a whole and read with the
    # label in the one query that resolves a run, and its history is a snapshot on each LabelMove.
    # Versions are named by number: they are immutable and never deleted (RESTRICT), as with the moves.
    split = models.JSONField(default=list, blank=True, editable=False)

    class Meta:
        ordering = ["prompt", "name"]
        constraints = [
            models.UniqueConstraint(fields=["prompt", "name"], name="promptlabel_prompt_name_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.prompt.name}@{self.name}"


class LabelMove(BaseModel):
    """Append-only history of label moves: who pointed which label from which version to which."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="label_moves")
    label = models.SlugField(max_length=50)
    from_version = models.ForeignKey(PromptVersion, on_delete=models.RESTRICT, null=True, blank=True, related_name="+")
    to_version = models.ForeignKey(PromptVersion, on_delete=models.RESTRICT, related_name="+")
    moved_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    # The label's split after this move ([] for none): a split set, changed or cleared is a move too.
    split = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # History of one label, newest first: selectors.label_history.
            models.Index(fields=["prompt", "label", "-created_at"], name="labelmove_prompt_label_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.prompt.name}@{self.label} -> v{self.to_version.number}"
