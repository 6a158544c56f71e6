from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

from llmops.admin import ReadOnlyAdmin
from llmops.money import money_str
from runs import batch_selectors
from runs.models import Batch, BatchItem, Run


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    """Read-only: runs are created through the API or commands and finished by workers."""

    list_display = [
        "id",
        "project",
        "prompt_version",
        "provider",
        "model",
        "status",
        "total_tokens",
        "latency_ms",
        "created_at",
    ]
    list_filter = ["status", "provider", "tokens_estimated", "created_at"]
    search_fields = ["id", "project__slug", "prompt_version__prompt__name", "model", "error_code", "idempotency_key"]
    list_select_related = ["project", "prompt_version__prompt"]
    date_hierarchy = "created_at"
    exclude = ["request_hash"]


class _FirstItemsFormSet(BaseInlineFormSet):
    """A batch may hold 100,000 items: the page shows the first ones; the API exports them all."""

    def get_queryset(self) -> QuerySet[BatchItem]:
        if not hasattr(self, "_first_items"):
            self._first_items = super().get_queryset().select_related("run")[: BatchItemInline.shown]
        return self._first_items


class BatchItemInline(admin.TabularInline):
    model = BatchItem
    formset = _FirstItemsFormSet
    shown = 100
    verbose_name_plural = f"items (the first {shown}, in line order)"
    fields = readonly_fields = ("line", "key", "variables", "item_status", "run", "error_code", "error_message")
    ordering = ["line"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="status")
    def item_status(self, item: BatchItem) -> str:
        return item.status


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdmin):
    """Read-only: batches are created through the API or `manage.py batch_run`; progress is derived."""

    list_display = [
        "id",
        "name",
        "project",
        "prompt_version",
        "status",
        "concurrency",
        "item_count",
        "pending",
        "in_flight",
        "succeeded",
        "failed",
        "canceled",
        "total_tokens",
        "total_cost",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "created_at"]
    search_fields = ["id", "name", "project__slug", "prompt_version__prompt__name"]
    list_select_related = ["project", "prompt_version__prompt"]
    date_hierarchy = "created_at"
    inlines = [BatchItemInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Batch]:
        # The progress columns are annotations of one query per page (runs.batches._progress).
        return batch_selectors.with_progress(super().get_queryset(request))

    @admin.display(description="pending")
    def pending(self, batch: Batch) -> int:
        return batch_selectors.batch_progress(batch)["counts"]["pending"]

    @admin.display(description="in flight")
    def in_flight(self, batch: Batch) -> int:
        counts = batch_selectors.batch_progress(batch)["counts"]
        return counts["queued"] + counts["running"]

    @admin.display(description="succeeded")
    def succeeded(self, batch: Batch) -> int:
        return batch_selectors.batch_progress(batch)["counts"]["succeeded"]

    @admin.display(description="failed")
    def failed(self, batch: Batch) -> int:
        return batch_selectors.batch_progress(batch)["counts"]["failed"]

    @admin.display(description="canceled")
    def canceled(self, batch: Batch) -> int:
        return batch_selectors.batch_progress(batch)["counts"]["canceled"]

    @admin.display(description="tokens")
    def total_tokens(self, batch: Batch) -> int:
        return batch_selectors.batch_progress(batch)["total_tokens"]

    @admin.display(description="cost (USD)")
    def total_cost(self, batch: Batch) -> str:
        return money_str(batch_selectors.batch_progress(batch)["total_cost"])
