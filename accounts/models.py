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
    EVALS_READ = "evals:read", "Read datasets, experiments and scores"
    EVALS_WRITE = "evals:write", "Create datasets and examples, run experiments, record scores"
    KEYS_MANAGE = "keys:manage", "Create, rotate and revoke keys; manage budgets"


def all_scopes() -> list[str]:
    return [scope.value for scope in Scope]


class Role(models.TextChoices):
    """A member's role in a project; each includes the ones below it."""

    OWNER = "owner", "Owner: everything, including deleting the project and managing owners"
    ADMIN = "admin", "Admin: members (not projects), API keys, budgets, webhooks, protected labels"
    EDITOR = "editor", "Editor: prompts, versions, labels that are not protected, runs, batches"
    VIEWER = "viewer", "Viewer: reads everything in the project, renders prompts, runs nothing"


ROLE_RANK = {Role.VIEWER: 0, Role.EDITOR: 1, Role.ADMIN: 2, Role.OWNER: 3}
# The scopes each role allows: a session acts with all of them, a key with those it holds among them.
_VIEWER_SCOPES = [Scope.PROMPTS_READ, Scope.RUNS_READ, Scope.BILLING_READ, Scope.EVALS_READ]
_EDITOR_SCOPES = [*_VIEWER_SCOPES, Scope.PROMPTS_WRITE, Scope.RUNS_EXECUTE, Scope.EVALS_WRITE]
ROLE_SCOPES: dict[str, list[str]] = {
    Role.VIEWER: [str(scope) for scope in _VIEWER_SCOPES],
    Role.EDITOR: [str(scope) for scope in _EDITOR_SCOPES],
    Role.ADMIN: all_scopes(),
    Role.OWNER: all_scopes(),
}


def role_at_least(role: str, minimum: str) -> bool:
    return ROLE_RANK[Role(role)] >= ROLE_RANK[Role(minimum)]


def default_protected_labels() -> list[str]:
    return ["production"]


class Project(BaseModel):
    """What owns prompts, runs, keys, budgets and webhooks; its members act on them by role.

    Every user has a personal project (`personal_for`), made with the user, so single-user flows
    need no project of their own."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=50, unique=True)
    personal_for = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="personal_project",
        help_text="The user this is the personal project of; empty for a team project.",
    )
    protected_labels = models.JSONField(
        default=default_protected_labels,
        blank=True,
        help_text="Label names only admins may move.",
    )

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Membership(BaseModel):
    """A user's role in a project."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices)

    class Meta:
        ordering = ["project", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_project_user_uniq"),
        ]
        indexes = [models.Index(fields=["user", "project"], name="membership_user_idx")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class APIKey(BaseModel):
    """A project's API key, made by a member (`created_by`). Only a SHA-256 hash of the secret is stored.

    A key acts in its project with the scopes it holds that its creator's current role allows; it
    stops working when its creator leaves the project.

    The full key a client sends is `<prefix>.<secret>`; `prefix` is public (shown in lists and the
    admin) and finds the row, the secret is checked against `secret_hash` in constant time.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
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

    # Set when the key authenticates (accounts.services.api_key_authenticate): its creator's role in the
    # project now, which bounds what the key may do (accounts.access). Not a column.
    member_role: str

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]
        indexes = [
            # The key list of one project: selectors.api_key_list.
            models.Index(fields=["project", "-created_at"], name="apikey_project_created_idx"),
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
