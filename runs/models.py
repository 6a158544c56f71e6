from django.conf import settings
from django.db import models
from django.db.models import Q

from llmops.models import BaseModel


class Provider(BaseModel):
    """A connection to an LLM provider; the `<provider>` part of a version's model string.

    The secret is never stored: `api_key_env` names the environment variable that holds it.
    """

    class Kind(models.TextChoices):
        HF_INFERENCE = "hf-inference", "Hugging Face Inference"
        OPENAI_COMPATIBLE = "openai-compatible", "OpenAI-compatible (vLLM, TGI, llama.cpp, Ollama)"

    name = models.SlugField(max_length=50, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    base_url = models.URLField(
        max_length=500,
        blank=True,
        default="",
        help_text="Required for openai-compatible; e.g. http://127.0.0.1:8011/v1",
    )
    api_key_env = models.CharField(
        max_length=100, blank=True, default="", help_text="Name of the environment variable holding the API key."
    )
    timeout = models.FloatField(default=60.0, help_text="Seconds per request.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(timeout__gt=0), name="provider_timeout_positive"),
            models.CheckConstraint(
                condition=Q(kind__in=["hf-inference", "openai-compatible"]), name="provider_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Run(BaseModel):
    """One execution of a prompt version against a model. Append-only once finished."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELED)

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="runs")
    api_key = models.ForeignKey(
        "accounts.APIKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="runs"
    )
    prompt_version = models.ForeignKey("prompts.PromptVersion", on_delete=models.PROTECT, related_name="runs")
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
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When the run may next be picked up (retry backoff); recovery ignores runs waiting for it.
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="run_owner_idempotency_key_uniq",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "succeeded", "failed", "canceled"]),
                name="run_status_valid",
            ),
        ]
        indexes = [
            # The owner's run list, newest first, optionally by status: selectors.run_list.
            models.Index(fields=["owner", "-created_at"], name="run_owner_created_idx"),
            models.Index(fields=["owner", "status", "-created_at"], name="run_owner_status_idx"),
            # Recovery scans unfinished runs by age: services.runs_recover.
            models.Index(
                fields=["status", "created_at"],
                condition=Q(status__in=["queued", "running"]),
                name="run_unfinished_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED
