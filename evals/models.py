"""Datasets of examples, experiments that run prompt versions over them, and the scores of runs.

A dataset is versioned by appending: every change (examples added, examples removed) is a new
numbered DatasetVersion, and version N holds the examples with `added_in <= N` that were not
removed by then (`removed_in` NULL or > N). Examples never change once written, so an experiment
that names a dataset version names exactly the examples it used, forever.
"""

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from llmops.models import BaseModel


class Dataset(BaseModel):
    """A project's named set of examples (variables, expected output, reference notes, tags)."""

    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="datasets")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    name = models.SlugField(max_length=100)
    description = models.TextField(blank=True, default="")
    # Highest version number handed out; bumped under a row lock so numbers have no gaps or duplicates.
    latest_version_number = models.PositiveIntegerField(default=0, editable=False)
    # Highest example position handed out (under the same lock): examples keep the order they came in.
    last_position = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="dataset_project_name_uniq"),
        ]

    def __str__(self) -> str:
        return self.name


class ImmutableRowError(Exception):
    """A saved dataset version or example was about to be changed."""


class DatasetVersion(BaseModel):
    """One numbered state of a dataset: what an append or a removal made it. Immutable."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    example_count = models.PositiveIntegerField(default=0, help_text="Examples in this version.")
    added_count = models.PositiveIntegerField(default=0)
    removed_count = models.PositiveIntegerField(default=0)
    note = models.CharField(max_length=500, blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="datasetversion_dataset_number_uniq"),
            models.CheckConstraint(condition=Q(number__gte=1), name="datasetversion_number_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset.name} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ImmutableRowError(f"Dataset version {self.pk} is immutable.")
        super().save(*args, **kwargs)


class Example(BaseModel):
    """One example of a dataset. Its content never changes; removing it sets `removed_in` only
    (a conditional UPDATE in evals.dataset_services), so earlier dataset versions still hold it."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="examples")
    position = models.PositiveIntegerField(help_text="Order in the dataset: 1, 2, ... as appended.")
    added_in = models.PositiveIntegerField(help_text="The dataset version that added it.")
    removed_in = models.PositiveIntegerField(null=True, blank=True, help_text="The dataset version that removed it.")
    variables = models.JSONField(default=dict, blank=True)
    expected_output = models.TextField(blank=True, default="")
    reference = models.TextField(blank=True, default="", help_text="Reference notes, e.g. for a judge.")
    tags = models.JSONField(default=list, blank=True)
    # "Save this run as an example": the run it came from, when it came from one.
    source_run = models.ForeignKey("runs.Run", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")

    class Meta:
        ordering = ["dataset", "position"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "position"], name="example_dataset_position_uniq"),
            models.CheckConstraint(
                condition=Q(removed_in__isnull=True) | Q(removed_in__gt=models.F("added_in")),
                name="example_removed_after_added",
            ),
        ]
        indexes = [
            # The examples of one dataset version, in order: selectors.example_list(version=...).
            models.Index(fields=["dataset", "added_in", "position"], name="example_dataset_added_idx"),
        ]

    def __str__(self) -> str:
        return f"example {self.position}"


class Experiment(BaseModel):
    """One or more versions of a prompt run over one dataset version (a batch each), then scored.

    The first arm (position 0) is the baseline the others are compared with. `summary` is the
    result table, computed once every arm's batch completed and every score is stored."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"  # the arms' batches are running
        SCORING = "scoring", "Scoring"  # every batch completed; the scorers are at work
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"  # could not be scored (error_message says why)
        CANCELED = "canceled", "Canceled"

    ACTIVE = (Status.RUNNING, Status.SCORING)

    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="experiments")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    api_key = models.ForeignKey(
        "accounts.APIKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="experiments"
    )
    prompt = models.ForeignKey("prompts.Prompt", on_delete=models.RESTRICT, related_name="experiments")
    dataset = models.ForeignKey(Dataset, on_delete=models.RESTRICT, related_name="experiments")
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.RESTRICT, related_name="experiments")
    name = models.CharField(max_length=200, blank=True, default="")
    # [{"name": "exact_match", "options": {...}, "threshold": 0.5}, ...]: evals.scorers specs, checked.
    scorers = models.JSONField(default=list)
    params = models.JSONField(default=dict, blank=True, help_text="Overrides of the versions' parameters.")
    concurrency = models.PositiveSmallIntegerField(default=4)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    error_message = models.TextField(blank=True, default="")
    summary = models.JSONField(default=dict, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["running", "scoring", "completed", "failed", "canceled"]),
                name="experiment_status_valid",
            ),
        ]
        indexes = [
            # The project's experiments, newest first, optionally of one prompt: selectors.experiment_list.
            models.Index(fields=["project", "-created_at"], name="experiment_project_created_idx"),
            models.Index(fields=["prompt", "dataset", "-created_at"], name="experiment_prompt_dataset_idx"),
        ]

    def __str__(self) -> str:
        return f"experiment {self.name or self.pk} ({self.status})"


class ExperimentArm(BaseModel):
    """One version of an experiment, as the caller named it (a number or a label), and its batch."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="arms")
    position = models.PositiveSmallIntegerField(help_text="0 is the baseline.")
    ref = models.CharField(max_length=60, help_text="The version as requested: a number or a label.")
    prompt_version = models.ForeignKey("prompts.PromptVersion", on_delete=models.RESTRICT, related_name="+")
    batch = models.OneToOneField(
        "runs.Batch", on_delete=models.RESTRICT, null=True, blank=True, related_name="experiment_arm"
    )

    class Meta:
        ordering = ["experiment", "position"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "position"], name="experimentarm_position_uniq"),
            models.UniqueConstraint(fields=["experiment", "prompt_version"], name="experimentarm_version_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.experiment_id} arm {self.position} ({self.ref})"


class Score(BaseModel):
    """A score of one run: by a scorer in an experiment (with its example and arm), or given by a
    client (`source=api`, feedback on any run). `value` is in [0, 1]; NULL when scoring failed
    (`error` says why, e.g. a judge that answered out of format). Append-only."""

    class Source(models.TextChoices):
        EXPERIMENT = "experiment", "An experiment's scorer"
        API = "api", "Given through the API"

    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="scores")
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, null=True, blank=True, related_name="scores")
    name = models.CharField(max_length=100, help_text="The scorer's name, or the client's name for the score.")
    value = models.FloatField(null=True, blank=True)
    passed = models.BooleanField(null=True, blank=True)
    reason = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.EXPERIMENT)
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, null=True, blank=True, related_name="scores")
    arm = models.ForeignKey(ExperimentArm, on_delete=models.CASCADE, null=True, blank=True, related_name="scores")
    example = models.ForeignKey(Example, on_delete=models.RESTRICT, null=True, blank=True, related_name="scores")
    # An LLM-as-judge scorer's own call: a run like any other, charged.
    judge_run = models.ForeignKey("runs.Run", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Scoring again (a redelivered message) writes nothing twice.
            models.UniqueConstraint(
                fields=["arm", "example", "name"], condition=Q(arm__isnull=False), name="score_arm_example_name_uniq"
            ),
            models.CheckConstraint(
                condition=Q(value__isnull=True) | (Q(value__gte=0) & Q(value__lte=1)), name="score_value_range"
            ),
        ]
        indexes = [
            # The scores of a set of runs (a split's arms, a run's page): selectors by run.
            models.Index(fields=["run", "name"], name="score_run_name_idx"),
            # Scores per version over time (the admin's chart): by experiment.
            models.Index(fields=["experiment", "name"], name="score_experiment_name_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


class LabelGate(BaseModel):
    """Moving `label` of `prompt` needs a completed experiment on the dataset's latest version in
    which the target version's mean `scorer` score is at least `threshold` (and, when the label's
    current version was its baseline, not significantly below it). Checked by prompts.label_move."""

    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="label_gates")
    prompt = models.ForeignKey("prompts.Prompt", on_delete=models.CASCADE, related_name="label_gates")
    label = models.SlugField(max_length=50)
    dataset = models.ForeignKey(Dataset, on_delete=models.RESTRICT, related_name="gates")
    scorer = models.CharField(max_length=100)
    threshold = models.FloatField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")

    class Meta:
        ordering = ["prompt", "label"]
        constraints = [
            models.UniqueConstraint(fields=["prompt", "label"], name="labelgate_prompt_label_uniq"),
            models.CheckConstraint(
                condition=Q(threshold__gte=0) & Q(threshold__lte=1), name="labelgate_threshold_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prompt_id}@{self.label} gated on {self.scorer} >= {self.threshold}"
