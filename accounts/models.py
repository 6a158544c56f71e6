import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from accounts.ratelimit import RATE_FORMAT_HELP, rate_is_valid
from llmops.models import BaseModel


class User(AbstractUser):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"


class Scope(models.TextChoices):
    """What a key may do; an endpoint names the scope it needs."""

    PROMPTS_READ = "prompts:read", "Read prompts, versions, labels; render"
    PROMPTS_WRITE = "prompts:write", "Create prompts and versions, move labels, archive"
    RUNS_EXECUTE = "runs:execute", "Create and cancel runs"
    RUNS_READ = "runs:read", "Read runs"
    BILLING_READ = "billing:read", "Read costs and budgets"
    KEYS_MANAGE = "keys:manage", "Create, rotate and revoke keys; manage budgets"


def all_scopes() -> list[str]:
    return [scope.value for scope in Scope]


class APIKey(BaseModel):
    """A user's API key. Only a SHA-256 hash of the secret is stored.

    The full key a client sends is `<prefix>.<secret>`; `prefix` is public (shown in lists and the
    admin) and finds the row, the secret is checked against `secret_hash` in constant time.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=32, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    is_active = models.BooleanField(default=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    scopes = models.JSONField(default=all_scopes, help_text="Granted scopes; see accounts.models.Scope.")
    # Rotation keeps the previous secret working until this time (a grace period), then never again.
    previous_secret_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Staff overrides of the default limits (settings RATE_LIMIT_*); empty or null means the default.
    rate_limit = models.CharField(
        max_length=20, blank=True, default="", help_text="Requests per period, e.g. '600/m'. Empty: default."
    )
    run_rate_limit = models.CharField(
        max_length=20, blank=True, default="", help_text="Run creations per period, e.g. '60/m'. Empty: default."
    )
    tokens_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Run tokens per minute. Empty: default."
    )

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]
        indexes = [
            # The key list of one user: selectors.api_key_list.
            models.Index(fields=["user", "-created_at"], name="apikey_user_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def status(self) -> str:
        if not self.is_active:
            return "revoked"
        if self.is_expired:
            return "expired"
        return "active"

    def clean(self) -> None:
        errors = {
            field: RATE_FORMAT_HELP
            for field in ("rate_limit", "run_rate_limit")
            if getattr(self, field) and not rate_is_valid(getattr(self, field))
        }
        if errors:
            raise ValidationError(errors)


class WebhookEvent(models.TextChoices):
    """What a webhook endpoint may subscribe to. Other apps emit these through accounts.webhooks."""

    RUN_SUCCEEDED = "run.succeeded", "A run succeeded"
    RUN_FAILED = "run.failed", "A run failed"
    BATCH_COMPLETED = "batch.completed", "A batch of runs completed"
    PROMPT_VERSION_CREATED = "prompt.version_created", "A prompt version was created"
    PROMPT_LABEL_MOVED = "prompt.label_moved", "A prompt label was moved (refresh cached prompts)"


class WebhookEndpoint(BaseModel):
    """A URL of the owner's that receives signed POSTs for the events it subscribes to.

    The server signs every delivery with the secret, so it must be kept, not hashed; `secret` holds
    it encrypted (a Fernet token, accounts.webhooks.secret_encrypt), so a database dump alone cannot
    sign. The plaintext is returned once, at creation, and never shown by the API or the admin.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000, help_text="http(s) URL that receives the POSTs.")
    events = models.JSONField(default=list, help_text="Subscribed event names; see accounts.models.WebhookEvent.")
    secret = models.CharField(max_length=500, editable=False, help_text="The signing secret, encrypted.")
    description = models.CharField(max_length=200, blank=True, default="")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(url__startswith="http://") | models.Q(url__startswith="https://"),
                name="webhookendpoint_url_http",
            ),
        ]
        indexes = [
            # The owner's endpoint list and the endpoints an event goes to: webhooks.webhook_endpoint_list,
            # webhooks.webhook_emit.
            models.Index(fields=["owner", "-created_at"], name="webhookendpoint_owner_idx"),
        ]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(BaseModel):
    """One event sent (or being sent) to one endpoint. Its id is the `X-Webhook-Id` header, the
    receiver's idempotency key: retries of a delivery reuse it."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=64, choices=WebhookEvent.choices)
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    # Set by emitters that may run twice for one fact (a redelivered actor message): the second emit
    # of the same key to the same endpoint writes nothing.
    dedupe_key = models.CharField(max_length=200, blank=True, default="", editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    # While pending: when the next attempt is due (also a lease against a concurrent duplicate message).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "succeeded", "failed"]), name="webhookdelivery_status_valid"
            ),
            models.CheckConstraint(
                condition=~models.Q(status="succeeded") | models.Q(delivered_at__isnull=False),
                name="webhookdelivery_succeeded_has_time",
            ),
            models.UniqueConstraint(
                fields=["endpoint", "dedupe_key"],
                condition=~models.Q(dedupe_key=""),
                name="webhookdelivery_endpoint_dedupe_uniq",
            ),
        ]
        indexes = [
            # An endpoint's delivery log, newest first: webhooks.webhook_delivery_list.
            models.Index(fields=["endpoint", "-created_at"], name="webhookdelivery_endpoint_idx"),
            # Overdue pending deliveries: webhooks.webhook_deliveries_recover.
            models.Index(
                fields=["next_attempt_at", "created_at"],
                condition=models.Q(status="pending"),
                name="webhookdelivery_pending_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} -> {self.endpoint_id} ({self.status})"
