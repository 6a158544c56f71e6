"""Webhooks: endpoints that receive signed POSTs, the events they subscribe to, and each delivery."""

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from llmops.models import BaseModel


class WebhookEvent(models.TextChoices):
    """What a webhook endpoint may subscribe to: this app's vocabulary. Other apps emit these through
    webhooks.services.webhook_emit with a payload they build; this app imports none of them."""

    RUN_SUCCEEDED = "run.succeeded", "A run succeeded"
    RUN_FAILED = "run.failed", "A run failed"
    BATCH_COMPLETED = "batch.completed", "A batch of runs completed"
    PROMPT_VERSION_CREATED = "prompt.version_created", "A prompt version was created"
    PROMPT_LABEL_MOVED = "prompt.label_moved", "A prompt label was moved (refresh cached prompts)"


class WebhookEndpoint(BaseModel):
    """A URL of the project's that receives signed POSTs for the events it subscribes to.

    The server signs every delivery with the secret, so it must be kept, not hashed; `secret` holds
    it encrypted (a Fernet token, webhooks.secrets.secret_encrypt), so a database dump alone cannot
    sign. The plaintext is returned once, at creation, and never shown by the API or the admin.
    """

    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="webhook_endpoints")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    url = models.URLField(max_length=2000, help_text="http(s) URL that receives the POSTs.")
    events = models.JSONField(default=list, help_text="Subscribed event names; see webhooks.models.WebhookEvent.")
    secret = models.CharField(max_length=500, editable=False, help_text="The signing secret, encrypted.")
    description = models.CharField(max_length=200, blank=True, default="")
    is_active = models.BooleanField(default=True)

    class Meta:
        # The tables keep the names they had in `accounts` (moved with SeparateDatabaseAndState).
        db_table = "accounts_webhookendpoint"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(url__startswith="http://") | models.Q(url__startswith="https://"),
                name="webhookendpoint_url_http",
            ),
        ]
        indexes = [
            # The project's endpoint list and the endpoints an event goes to: selectors.webhook_endpoint_list,
            # services.webhook_emit.
            models.Index(fields=["project", "-created_at"], name="webhookendpoint_project_idx"),
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
        db_table = "accounts_webhookdelivery"
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
            # An endpoint's delivery log, newest first: selectors.webhook_delivery_list.
            models.Index(fields=["endpoint", "-created_at"], name="webhookdelivery_endpoint_idx"),
            # Overdue pending deliveries: services.webhook_deliveries_recover.
            models.Index(
                fields=["next_attempt_at", "created_at"],
                condition=models.Q(status="pending"),
                name="webhookdelivery_pending_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} -> {self.endpoint_id} ({self.status})"
