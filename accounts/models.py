import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
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
