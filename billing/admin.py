from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from billing.models import CostLog, ModelPrice
from llmops.admin import ReadOnlyAdmin


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """Staff prices win over seeded ones; a price change is a new row with a later effective_from."""

    list_display = ["model", "provider", "input_per_mtok", "output_per_mtok", "currency", "effective_from", "source"]
    list_filter = ["source", "currency", "provider"]
    search_fields = ["model", "provider", "notes"]
    date_hierarchy = "effective_from"

    def save_model(self, request: HttpRequest, obj: ModelPrice, form: Any, change: bool) -> None:
        if not change:
            obj.source = ModelPrice.Source.STAFF
        super().save_model(request, obj, form, change)

    def get_readonly_fields(self, request: HttpRequest, obj: ModelPrice | None = None) -> Any:
        return ["source"]


@admin.register(CostLog)
class CostLogAdmin(ReadOnlyAdmin):
    """Read-only: cost entries are written with the run's completion and never edited."""

    list_display = [
        "created_at",
        "owner",
        "provider",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "total_cost",
        "currency",
        "cost_known",
        "tokens_estimated",
    ]
    list_filter = ["cost_known", "tokens_estimated", "provider", "created_at"]
    search_fields = ["model", "provider", "owner__username", "run__id"]
    list_select_related = ["owner", "api_key"]
    date_hierarchy = "created_at"
