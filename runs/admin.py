import json
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import URLPattern, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from llmops.admin import ReadOnlyAdmin
from llmops.money import money_str
from runs import batch_selectors
from runs.admin_filters import BatchFilter, ProjectFilter, PromptFilter, UnpricedFilter
from runs.admin_try import TryPages, cost_str
from runs.models import Batch, BatchItem, Run


def conversation_messages(rendered_input: Any) -> list[dict[str, str]]:
    """A run's input as role + text blocks, whatever shape the stored JSON has."""
    if not isinstance(rendered_input, list):
        return [{"role": "input", "content": _json(rendered_input)}]
    messages = []
    for message in rendered_input:
        if isinstance(message, dict):
            content = message.get("content", "")
            text = content if isinstance(content, str) else _json(content)  # e.g. a list of parts
            messages.append({"role": str(message.get("role", "?")), "content": text})
        else:
            messages.append({"role": "?", "content": _json(message)})
    return messages


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _json_block(value: Any) -> SafeString:
    return format_html('<pre class="run-json">{}</pre>', _json(value))


USAGE_FIELDS = ["prompt_tokens", "completion_tokens", "total_tokens", "tokens_estimated"]


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    """Read-only: runs are created through the API, commands, or "Run this version" (runs.admin_try,
    through the same service), and finished by workers."""

    list_display = [
        "id",
        "project",
        "prompt",
        "provider",
        "model",
        "status",
        "total_tokens",
        "cost",
        "latency_ms",
        "attempts",
        "cached",
        "error_code",
        "created_at",
    ]
    list_filter = [
        ProjectFilter,
        "status",
        "cached",
        PromptFilter,
        "model",
        "provider",
        "created_at",
        BatchFilter,
        UnpricedFilter,
    ]
    search_fields = [
        "id",
        "project__slug",
        "prompt_version__prompt__name",
        "model",
        "error_code",
        "error_message",
        "output",
        "idempotency_key",
    ]
    # cost_log is the reverse one-to-one of billing.CostLog: joined, so the cost column costs no query.
    list_select_related = ["project", "prompt_version__prompt", "cost_log"]
    date_hierarchy = "created_at"
    # request_hash and the queue's bookkeeping (enqueued_at, lease_expires_at) are left out.
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "status",
                    "project",
                    "prompt_version_link",
                    "batch_link",
                    "provider",
                    "model",
                    "created_by",
                    "api_key",
                    "created_at",
                ]
            },
        ),
        ("Conversation", {"fields": ["conversation"]}),
        ("Usage", {"fields": [*USAGE_FIELDS, "latency_ms", "cost"]}),
        (
            "Outcome",
            {
                "fields": [
                    "cached",
                    "attempts",
                    "error",
                    "attempt_log_json",
                    "finish_reason",
                    "started_at",
                    "finished_at",
                    "next_attempt_at",
                ]
            },
        ),
        ("Request", {"fields": ["variables_json", "params_json", "metadata_json", "idempotency_key"]}),
    ]
    readonly_fields = [
        "prompt_version_link",
        "batch_link",
        "conversation",
        "cost",
        "error",
        "attempt_log_json",
        "cached",
        "variables_json",
        "params_json",
        "metadata_json",
    ]

    def get_urls(self) -> list[URLPattern]:
        # Before the defaults: their `<path:object_id>/` catch-all would swallow `try/...`.
        return [*TryPages(self).urls(), *super().get_urls()]

    @admin.display(description="prompt", ordering="prompt_version__prompt__name")
    def prompt(self, run: Run) -> str:
        if run.prompt_version is None:
            return "- (a model, through the gateway)"
        return f"{run.prompt_version.prompt.name} v{run.prompt_version.number}"

    @admin.display(description="cost (USD)")
    def cost(self, run: Run) -> str:
        return cost_str(run)

    @admin.display(description="prompt version")
    def prompt_version_link(self, run: Run) -> SafeString:
        url = reverse(f"{self.admin_site.name}:prompts_promptversion_change", args=[run.prompt_version_id])
        return format_html('<a href="{}">{}</a>', url, self.prompt(run))

    @admin.display(description="batch")
    def batch_link(self, run: Run) -> SafeString | str:
        item = BatchItem.objects.filter(run=run).select_related("batch").first()
        if item is None:
            return "-"
        batch_url = reverse(f"{self.admin_site.name}:runs_batch_change", args=[item.batch_id])
        runs_url = reverse(f"{self.admin_site.name}:runs_run_changelist")
        return format_html(
            '<a href="{}">{}</a>, item {} (line {}); <a href="{}?{}={}">all its runs</a>',
            batch_url,
            item.batch,
            item.key,
            item.line,
            runs_url,
            BatchFilter.parameter_name,
            item.batch_id,
        )

    @admin.display(description="input and output")
    def conversation(self, run: Run) -> str:
        notes = {
            Run.Status.QUEUED: "No output yet: the run is queued.",
            Run.Status.RUNNING: "No output yet: the run is running.",
        }
        context = {
            "messages": conversation_messages(run.rendered_input),
            "reply": run.output,
            "reply_note": notes.get(Run.Status(run.status), f"No output: the run {run.status}."),
        }
        return render_to_string("admin/runs/run/conversation.html", context)

    @admin.display(description="error")
    def error(self, run: Run) -> SafeString | str:
        if not run.error_code:
            return "-"
        return format_html("<code>{}</code>: {}", run.error_code, run.error_message)

    @admin.display(description="attempt log")
    def attempt_log_json(self, run: Run) -> SafeString:
        """Each attempt that ended: the model it called and its error ("" for the one that answered)."""
        return _json_block(run.attempt_log)

    @admin.display(description="variables")
    def variables_json(self, run: Run) -> SafeString:
        return _json_block(run.variables)

    @admin.display(description="params")
    def params_json(self, run: Run) -> SafeString:
        return _json_block(run.params)

    @admin.display(description="metadata")
    def metadata_json(self, run: Run) -> SafeString:
        return _json_block(run.metadata)


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


def run_action_register(action: Any) -> None:
    """Adds an admin action (a function of modeladmin, request, queryset) to the runs changelist.
    For the apps above runs, which runs cannot import: evals registers "Save as example" from its
    admin module (evals.admin_datasets)."""
    actions = list(RunAdmin.actions or [])  # type: ignore[misc]
    if action not in actions:
        RunAdmin.actions = [*actions, action]  # type: ignore[misc]


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
        "runs_link",
    ]
    readonly_fields = ["runs_link"]
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

    @admin.display(description="runs")
    def runs_link(self, batch: Batch) -> SafeString:
        url = reverse(f"{self.admin_site.name}:runs_run_changelist")
        return format_html('<a href="{}?{}={}">runs</a>', url, BatchFilter.parameter_name, batch.pk)
