from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from llmops.models import BaseModel
from llmops.money import money_str


class ModelPrice(BaseModel):
    """Price per million tokens of a provider's model from a date on.

    `model` is an exact model id or a glob (`*`, `?`); `provider` empty means any provider.
    Lookup order: staff rows before seeded ones, exact model before glob, a named provider before
    "any", then the latest `effective_from` not after the run.
    """

    class Source(models.TextChoices):
        STAFF = "staff", "Staff"
        SEED = "seed", "Seeded from genai-prices"
        DEFAULT = "default", "Built-in default"

    provider = models.CharField(max_length=50, blank=True, default="", help_text="Provider name; empty = any.")
    model = models.CharField(max_length=200, help_text="Model id, or a glob such as 'Qwen/*'.")
    input_per_mtok = models.DecimalField(max_digits=14, decimal_places=6, help_text="Per million input tokens.")
    output_per_mtok = models.DecimalField(max_digits=14, decimal_places=6, help_text="Per million output tokens.")
    currency = models.CharField(max_length=3, default="USD")
    effective_from = models.DateField()
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.STAFF)
    notes = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        ordering = ["provider", "model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model", "effective_from", "source"], name="modelprice_key_uniq"
            ),
            models.CheckConstraint(
                condition=Q(input_per_mtok__gte=0) & Q(output_per_mtok__gte=0), name="modelprice_non_negative"
            ),
        ]
        indexes = [
            # Price lookup narrows by provider first: selectors.price_for.
            models.Index(fields=["provider", "effective_from"], name="modelprice_provider_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.provider or '*'}/{self.model} from {self.effective_from}"

    @property
    def is_glob(self) -> bool:
        return any(ch in self.model for ch in "*?[")


class CostLog(BaseModel):
    """What one succeeded run cost. Append-only; exactly one per run (the constraint makes a second
    charge impossible even if a message is delivered twice)."""

    run = models.OneToOneField("runs.Run", on_delete=models.RESTRICT, related_name="cost_log")
    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="cost_logs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    api_key = models.ForeignKey(
        "accounts.APIKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="cost_logs"
    )
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=200)
    # The run's version, written with the entry as `model` is: spend per prompt or version reads no runs.
    prompt_version = models.ForeignKey(
        "prompts.PromptVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    prompt_tokens = models.PositiveIntegerField()
    completion_tokens = models.PositiveIntegerField()
    tokens_estimated = models.BooleanField(default=False)
    price = models.ForeignKey(ModelPrice, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # Null when no price is known for the model: flagged, never a silent zero.
    input_cost = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True)
    output_cost = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True)
    total_cost = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    cost_known = models.BooleanField(default=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(cost_known=False, total_cost__isnull=True) | Q(cost_known=True, total_cost__isnull=False),
                name="costlog_known_has_total",
            ),
        ]
        indexes = [
            # Spend summaries of one project over a date range: selectors.cost_summary.
            models.Index(fields=["project", "created_at"], name="costlog_project_created_idx"),
            # Spend of one key's budget in its window: selectors.budgets_with_usage.
            models.Index(fields=["api_key", "created_at"], name="costlog_key_created_idx"),
        ]

    def __str__(self) -> str:
        cost = money_str(self.total_cost) if self.total_cost is not None else "unknown"
        return f"{self.model}: {cost} {self.currency}"


class Budget(BaseModel):
    """A hard spending limit of a user, or of one of their API keys (`api_key` null = the whole user).

    Spend is counted per window computed from the clock (UTC day, UTC month, or since always), so a
    window resets by itself. Runs reserve their maximum cost against every budget that applies
    before they are queued; see services.budget_reserve.
    """

    class Window(models.TextChoices):
        DAY = "day", "Day (UTC)"
        MONTH = "month", "Month (UTC)"
        NONE = "none", "No window (lifetime)"

    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="budgets")
    api_key = models.ForeignKey(
        "accounts.APIKey",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="budgets",
        help_text="Empty: the budget covers all of the project's runs.",
    )
    amount = models.DecimalField(max_digits=14, decimal_places=6, help_text="USD per window.")
    window = models.CharField(max_length=8, choices=Window.choices, default=Window.MONTH)

    class Meta:
        ordering = ["project", "created_at"]
        constraints = [
            # NULLs are distinct in a unique index, so the project-wide budget needs its own constraint.
            models.UniqueConstraint(fields=["project", "api_key"], name="budget_project_key_uniq"),
            models.UniqueConstraint(
                fields=["project"], condition=Q(api_key__isnull=True), name="budget_project_wide_uniq"
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="budget_amount_non_negative"),
            models.CheckConstraint(condition=Q(window__in=["day", "month", "none"]), name="budget_window_valid"),
        ]

    def __str__(self) -> str:
        scope = f"key {self.api_key.prefix}" if self.api_key is not None else "project-wide"
        return f"{money_str(self.amount)} USD per {self.window} ({scope})"

    def clean(self) -> None:
        # The API only offers the caller's own keys; this keeps the admin's form to the same rule.
        if self.api_key is not None and self.project_id is not None and self.api_key.project_id != self.project_id:
            raise ValidationError({"api_key": "This key belongs to another project."})


class BudgetReservation(BaseModel):
    """The most one run may cost, held against one budget from its creation until it finishes.

    Held reservations count against the budget; when the run succeeds the reservation is settled
    in the transaction that writes its CostLog (the real cost counts from then on), and when it fails
    or is canceled it is released.
    """

    class Status(models.TextChoices):
        HELD = "held", "Held"
        SETTLED = "settled", "Settled"
        RELEASED = "released", "Released"

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="reservations")
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="budget_reservations")
    amount = models.DecimalField(max_digits=18, decimal_places=10, help_text="Maximum cost of the run, USD.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.HELD)
    closed_at = models.DateTimeField(null=True, blank=True, help_text="When it was settled or released.")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["run", "budget"], name="budgetreservation_run_budget_uniq"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="budgetreservation_amount_non_negative"),
            models.CheckConstraint(
                condition=Q(status="held", closed_at__isnull=True)
                | Q(status__in=["settled", "released"], closed_at__isnull=False),
                name="budgetreservation_closed_iff_not_held",
            ),
        ]
        indexes = [
            # The held sum of one budget, taken on every run creation: selectors.budgets_with_usage.
            models.Index(fields=["budget"], condition=Q(status="held"), name="budgetres_held_idx"),
        ]

    def __str__(self) -> str:
        return f"{money_str(self.amount)} USD {self.status} for run {self.run_id}"


class CostDay(models.Model):
    """One project's cost log of one whole past UTC day, summed per provider, model, prompt version,
    key and member (billing/rollup.py): a spend summary over 90 days reads these rows, not every entry.
    Written once per (project, day), when a summary first needs the day; never edited."""

    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=200)
    prompt_version = models.ForeignKey(
        "prompts.PromptVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    api_key = models.ForeignKey("accounts.APIKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    runs = models.PositiveIntegerField()
    prompt_tokens = models.PositiveBigIntegerField()
    completion_tokens = models.PositiveBigIntegerField()
    # The sum of the known costs; the runs without one are counted apart, never summed as zero.
    cost = models.DecimalField(max_digits=18, decimal_places=10)
    unknown_cost_runs = models.PositiveIntegerField()

    class Meta:
        indexes = [models.Index(fields=["project", "day"], name="costday_project_day_idx")]

    def __str__(self) -> str:
        return f"{self.day} {self.provider}/{self.model}: {self.runs} runs"


class CostRollup(models.Model):
    """Marks one project's day as rolled up into CostDay; unique, so two requests racing to roll the
    same day cannot both write it."""

    project = models.ForeignKey("accounts.Project", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    rolled_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "day"], name="costrollup_project_day_unique")]

    def __str__(self) -> str:
        return f"{self.project_id} {self.day}"
