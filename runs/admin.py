from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, QueryDict

from llmops.admin import ReadOnlyAdmin
from runs import batches
from runs.models import Batch, BatchItem, Provider, Run
from runs.providers import provider_set


class ProviderForm(forms.ModelForm):
    """Validated by the model (Provider's field validators and clean), as runs.providers.provider_set is."""

    class Meta:
        model = Provider
        fields = ["name", "kind", "base_url", "api_key_env", "timeout", "enabled"]

    def full_clean(self) -> None:
        super().full_clean()
        if self.has_error("api_key_env"):
            # What was typed may be the key itself: the page showing the error must not send it back.
            data = self.data.copy() if isinstance(self.data, QueryDict) else QueryDict(mutable=True)
            data[self.add_prefix("api_key_env")] = ""
            self.data = data


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    """The secret itself is never stored: only the name of the environment variable holding it.
    Saved through runs.providers.provider_set, like `manage.py provider set`."""

    form = ProviderForm
    list_display = ["name", "kind", "base_url", "api_key_env", "timeout", "enabled", "updated_at"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "base_url"]

    def get_readonly_fields(self, request: HttpRequest, obj: Provider | None = None) -> Any:
        # Versions name their provider in their model string, and provider_set finds it by name.
        return ["name"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Provider, form: Any, change: bool) -> None:
        data = form.cleaned_data
        provider, _created = provider_set(
            name=obj.name,
            kind=data["kind"],
            base_url=data["base_url"],
            api_key_env=data["api_key_env"],
            timeout=data["timeout"],
            enabled=data["enabled"],
        )
        # The admin logs and redirects with `obj`: give it the saved row's values.
        for field in Provider._meta.concrete_fields:
            setattr(obj, field.attname, getattr(provider, field.attname))
        obj._state.adding = False


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    """Read-only: runs are created through the API or commands and finished by workers."""

    list_display = [
        "id",
        "owner",
        "prompt_version",
        "provider",
        "model",
        "status",
        "total_tokens",
        "latency_ms",
        "created_at",
    ]
    list_filter = ["status", "provider", "tokens_estimated", "created_at"]
    search_fields = ["id", "owner__username", "prompt_version__prompt__name", "model", "error_code", "idempotency_key"]
    list_select_related = ["owner", "prompt_version__prompt"]
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
        "owner",
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
    search_fields = ["id", "name", "owner__username", "prompt_version__prompt__name"]
    list_select_related = ["owner", "prompt_version__prompt"]
    date_hierarchy = "created_at"
    inlines = [BatchItemInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Batch]:
        # The progress columns are annotations of one query per page (runs.batches._progress).
        return batches.with_progress(super().get_queryset(request))

    @admin.display(description="pending")
    def pending(self, batch: Batch) -> int:
        return batches.batch_progress(batch)["counts"]["pending"]

    @admin.display(description="in flight")
    def in_flight(self, batch: Batch) -> int:
        counts = batches.batch_progress(batch)["counts"]
        return counts["queued"] + counts["running"]

    @admin.display(description="succeeded")
    def succeeded(self, batch: Batch) -> int:
        return batches.batch_progress(batch)["counts"]["succeeded"]

    @admin.display(description="failed")
    def failed(self, batch: Batch) -> int:
        return batches.batch_progress(batch)["counts"]["failed"]

    @admin.display(description="canceled")
    def canceled(self, batch: Batch) -> int:
        return batches.batch_progress(batch)["counts"]["canceled"]

    @admin.display(description="tokens")
    def total_tokens(self, batch: Batch) -> int:
        return batches.batch_progress(batch)["total_tokens"]

    @admin.display(description="cost (USD)")
    def total_cost(self, batch: Batch) -> Any:
        return batches.batch_progress(batch)["total_cost"]
