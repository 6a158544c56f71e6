from django.conf import settings
from django.db import models
from django.db.models import Q

from llmops.models import BaseModel


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

    run = models.OneToOneField("runs.Run", on_delete=models.PROTECT, related_name="cost_log")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="cost_logs")
    api_key = models.ForeignKey(
        "accounts.APIKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="cost_logs"
    )
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=200)
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
            # Spend summaries of one owner over a date range: selectors.cost_summary.
            models.Index(fields=["owner", "created_at"], name="costlog_owner_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.model}: {self.total_cost if self.cost_known else 'unknown'} {self.currency}"
