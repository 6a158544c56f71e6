from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from llmops.models import BaseModel


class Run(BaseModel):
    """One execution of a prompt version against a model. Append-only once finished."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"
        # A streamed run whose client went away before the end: charged for what was generated.
        INCOMPLETE = "incomplete", "Incomplete (client disconnected)"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED, Status.INCOMPLETE)
    # The statuses whose run used the provider and is charged (run_finish records their cost).
    CHARGED = (Status.SUCCEEDED, Status.INCOMPLETE)

    class Execution(models.TextChoices):
        WORKER = "worker", "By a worker (queued)"
        # In the request that asked for it (the gateway, runs.inline): nobody waits for a second try
        # after that request is gone, so recovery fails it instead of queueing it again.
        INLINE = "inline", "In the request (gateway)"

    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="runs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    api_key = models.ForeignKey(
        "accounts.APIKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="runs"
    )
    # None for a gateway call naming a model, not a prompt (`<provider>/<model>`).
    prompt_version = models.ForeignKey(
        "prompts.PromptVersion", on_delete=models.RESTRICT, null=True, blank=True, related_name="runs"
    )
    execution = models.CharField(max_length=8, choices=Execution.choices, default=Execution.WORKER)
    # The label the run was resolved through ("" when it named a version, an id or a model; `production`
    # when it named nothing and the prompt has it), and whether the label's A/B split picked
    # `prompt_version` (its arm) rather than the label's one version (prompts.splits).
    label = models.CharField(max_length=50, blank=True, default="", editable=False)
    split_arm = models.BooleanField(default=False, editable=False)
    # An HMAC of the caller's split key (SECRET_KEY), never the key: it may identify a person. Runs of one
    # caller share it; "" when none was given.
    split_key_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    variables = models.JSONField(default=dict, blank=True)
    rendered_input = models.JSONField(help_text="The messages exactly as sent to the provider.")
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=200, help_text="Model id at the provider.")
    params = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    request_hash = models.CharField(max_length=64, blank=True, default="", editable=False)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    output = models.TextField(blank=True, default="")
    finish_reason = models.CharField(max_length=32, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    total_tokens = models.PositiveIntegerField(null=True, blank=True)
    tokens_estimated = models.BooleanField(default=False, help_text="True when counted locally, not by the provider.")
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # One entry per attempt that ended, in order (runs.services.attempt_entry): {"attempt", "provider",
    # "model", "error_code", "error_message", "at"}, `error_code` "" for the one that answered. With
    # fallbacks it shows each model tried; `provider`/`model` above are the one that answered (or last failed).
    attempt_log = models.JSONField(default=list, blank=True, editable=False)
    # Answered from the response cache (runs.response_cache): no provider call, no cost entry, no budget hold.
    cached = models.BooleanField(default=False, editable=False)
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When the run may next be picked up (retry backoff); recovery ignores runs waiting for it.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The outbox marker (runs.services): when the broker last accepted this run's message. NULL while
    # queued means no message is known to exist (never sent, or the send failed): recovery sends one.
    enqueued_at = models.DateTimeField(null=True, blank=True, editable=False)
    # While running: the claim of attempt number `attempts` lapses at this time unless its worker
    # renews it (runs.leases). A run whose lease lapsed lost its worker; it is queued again.
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="run_project_idempotency_key_uniq",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "succeeded", "failed", "canceled", "incomplete"]),
                name="run_status_valid",
            ),
        ]
        indexes = [
            # The project's run list, newest first, optionally by status: selectors.run_list.
            models.Index(fields=["project", "-created_at"], name="run_project_created_idx"),
            models.Index(fields=["project", "status", "-created_at"], name="run_project_status_idx"),
            # The runs of one label of a prompt's versions, by time: evals.score_selectors.split_report.
            models.Index(
                fields=["project", "label", "prompt_version", "created_at"],
                condition=~Q(label=""),
                name="run_project_label_idx",
            ),
            # Recovery scans unfinished runs by age: services.runs_recover.
            models.Index(
                fields=["status", "created_at"],
                condition=Q(status__in=["queued", "running"]),
                name="run_unfinished_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.status})"

    # Set by runs.services.run_create on the instance it returns, for the request that executes the run
    # (runs.inline) and finishes it: the provider row it checked, and whether a budget holds an amount
    # for it. Not columns; a run loaded from the database has neither.
    provider_row: Any
    budget_held: bool

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class Batch(BaseModel):
    """Many runs of one prompt version, one per item, at most `concurrency` in flight (runs.batch_services).

    Progress, tokens and cost are derived from the items and their runs, never stored as counters.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"  # every item finished, whatever its outcome
        CANCELED = "canceled", "Canceled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="batches")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    api_key = models.ForeignKey(
        "accounts.APIKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="batches"
    )
    # A label given at creation is resolved once, here: moving the label later does not change the batch.
    prompt_version = models.ForeignKey("prompts.PromptVersion", on_delete=models.RESTRICT, related_name="batches")
    name = models.CharField(max_length=200, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    params = models.JSONField(default=dict, blank=True, help_text="Overrides of the version's parameters.")
    concurrency = models.PositiveSmallIntegerField(default=4, help_text="Most runs in flight at once (1 to 64).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # Fixed when the batch is created; never incremented afterwards.
    item_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0, help_text="Invalid rows left out (skip_invalid).")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"
        constraints = [
            models.CheckConstraint(
                condition=Q(concurrency__gte=1) & Q(concurrency__lte=64), name="batch_concurrency_range"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "completed", "canceled"]), name="batch_status_valid"
            ),
        ]
        indexes = [
            # The project's batch list, newest first: batch_selectors.batch_list.
            models.Index(fields=["project", "-created_at"], name="batch_project_created_idx"),
            # Recovery re-dispatches unfinished batches: batch_services.batches_recover.
            models.Index(fields=["created_at"], condition=Q(status__in=["queued", "running"]), name="batch_active_idx"),
        ]

    def __str__(self) -> str:
        return f"batch {self.name or self.pk} ({self.status})"


class BatchItem(BaseModel):
    """One row of a batch: its variables, then the run made for it (or why none was made).

    Status is derived: `pending` with no run and no error, the run's status once dispatched,
    `failed` when refused at dispatch (error_code set), `canceled` when the batch was canceled first.
    """

    CANCELED_CODE = "canceled"

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="items")
    line = models.PositiveIntegerField(help_text="Line of the uploaded file, or index in the inline items.")
    key = models.CharField(max_length=200, help_text="The caller's key, or the line number.")
    variables = models.JSONField(default=dict, blank=True)
    run = models.OneToOneField(
        Run, on_delete=models.RESTRICT, null=True, blank=True, related_name="batch_item", editable=False
    )
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["batch", "line"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "key"], name="batchitem_batch_key_uniq"),
            models.UniqueConstraint(fields=["batch", "line"], name="batchitem_batch_line_uniq"),
        ]
        indexes = [
            # The next items to dispatch, in line order: batch_services.batch_dispatch.
            models.Index(
                fields=["batch", "line"], condition=Q(run__isnull=True, error_code=""), name="batchitem_pending_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"item {self.key} of batch {self.batch_id}"

    @property
    def status(self) -> str:
        if self.run_id is not None:
            return self.run.status  # type: ignore[union-attr]
        if self.error_code == self.CANCELED_CODE:
            return Run.Status.CANCELED
        return Run.Status.FAILED if self.error_code else "pending"
