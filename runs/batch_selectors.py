"""Reads of batches: lists with progress, an item's outcome, the items to export.

Progress, tokens and cost are aggregates over the items and their runs, never stored counters.
"""

import uuid
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, DecimalField, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce

from accounts.models import Project
from llmops.errors import NotFound
from runs.models import Batch, BatchItem, Run
from runs.serializers import RunSerializer

CHUNK_SIZE = 500
# Items one dispatch call examines at most; refused items free their slot at once, so without a
# bound a batch whose every item is refused would be walked end to end in one transaction.

PENDING = "pending"

# A batch's runs are queued ones, never streamed, so never incomplete.
ITEM_STATUSES = (PENDING, *(status for status in Run.Status.values if status != Run.Status.INCOMPLETE))
# Item outcomes the command writes to its output; canceled items are left for a rerun.

WRITTEN_STATUSES = (Run.Status.SUCCEEDED, Run.Status.FAILED)


def _status_q(status: str, prefix: str = "") -> Q:
    """Items (reached through `prefix`) whose derived status is `status`."""
    run_missing = Q(**{f"{prefix}run__isnull": True})
    canceled_code = Q(**{f"{prefix}error_code": BatchItem.CANCELED_CODE})
    no_error = Q(**{f"{prefix}error_code": ""})
    if status == PENDING:
        return run_missing & no_error
    by_run = Q(**{f"{prefix}run__status": status})
    if status == Run.Status.FAILED:
        return by_run | (run_missing & ~no_error & ~canceled_code)
    if status == Run.Status.CANCELED:
        return by_run | (run_missing & canceled_code)
    return by_run


def _progress(prefix: str) -> dict[str, Any]:
    """Aggregates of a batch's items: counts by status, tokens and cost, in one query and with no
    stored counter. `prefix` is "items__" to annotate batches, "" to aggregate one batch's items.
    Items and runs (and runs and cost logs) are one to one, so the joins multiply nothing."""
    counted = "items" if prefix else "pk"
    money = DecimalField(max_digits=18, decimal_places=10)
    return {
        **{f"{status}_count": Count(counted, filter=_status_q(status, prefix)) for status in ITEM_STATUSES},
        "total_tokens": Coalesce(Sum(f"{prefix}run__total_tokens"), 0),
        "total_cost": Coalesce(Sum(f"{prefix}run__cost_log__total_cost"), Value(Decimal(0)), output_field=money),
        "unknown_cost_runs": Count(counted, filter=Q(**{f"{prefix}run__cost_log__cost_known": False})),
    }


def with_progress(batches: QuerySet[Batch]) -> QuerySet[Batch]:
    """Batches annotated with their progress (read by `batch_progress`): one query for a whole page."""
    return batches.annotate(**_progress("items__"))


def batch_list(*, project: Project, status: str | None = None) -> QuerySet[Batch]:
    """The project's batches, newest first, with their progress."""
    batches = Batch.objects.filter(project=project)
    if status:
        batches = batches.filter(status=status)
    return with_progress(batches.select_related("prompt_version__prompt")).order_by("-created_at")


def batch_get(*, project: Project, batch_id: Any) -> Batch:
    try:
        pk = uuid.UUID(str(batch_id))
    except ValueError:
        raise NotFound("Batch not found.") from None
    batch = batch_list(project=project).filter(pk=pk).first()
    if batch is None:
        raise NotFound("Batch not found.")
    return batch


def batch_progress(batch: Batch) -> dict[str, Any]:
    """{"counts": {status: n}, "total_tokens", "total_cost", "unknown_cost_runs"}, from the batch's
    annotations when it came from `batch_list`, else from one aggregate query."""
    if hasattr(batch, "pending_count"):
        values = {name: getattr(batch, name) for name in _progress("items__")}
    else:
        values = BatchItem.objects.filter(batch=batch).aggregate(**_progress(""))
    return {
        "counts": {status: values[f"{status}_count"] for status in ITEM_STATUSES},
        "total_tokens": values["total_tokens"],
        "total_cost": values["total_cost"],
        "unknown_cost_runs": values["unknown_cost_runs"],
    }


def batch_event_payload(batch: Batch) -> dict[str, Any]:
    progress = batch_progress(batch)
    return {
        "batch_id": str(batch.pk),
        "name": batch.name,
        "status": batch.status,
        "item_count": batch.item_count,
        "counts": progress["counts"],
        "usage": {"total_tokens": progress["total_tokens"]},
        "cost": {
            "total": str(progress["total_cost"]),
            "currency": "USD",
            "unknown_cost_runs": progress["unknown_cost_runs"],
        },
        "created_at": batch.created_at.isoformat(),
        "finished_at": batch.finished_at.isoformat() if batch.finished_at else None,
    }


def batch_items(
    *, batch: Batch, statuses: Iterable[str] | None = None, changed_since: datetime | None = None
) -> QuerySet[BatchItem]:
    """The batch's items in line order with their runs and costs; iterate with `.iterator(chunk_size=...)`.

    `changed_since` keeps items whose run finished, or which were refused or canceled, at or after it.
    """
    items = BatchItem.objects.filter(batch=batch).select_related("run__cost_log", "run__prompt_version__prompt")
    if statuses is not None:
        wanted = Q()
        for status in statuses:
            wanted |= _status_q(status)
        items = items.filter(wanted)
    if changed_since is not None:
        finished = Q(run__finished_at__gte=changed_since)
        items = items.filter(finished | Q(run__isnull=True, updated_at__gte=changed_since))
    return items.order_by("line")


def item_changed_at(item: BatchItem) -> datetime:
    """When the item reached its current state (for `batch_items(changed_since=...)`)."""
    if item.run is not None and item.run.finished_at is not None:
        return item.run.finished_at
    return item.updated_at


def item_result(item: BatchItem) -> dict[str, Any]:
    """One item's outcome, as exported (JSON Lines) and as the batch_run command writes it: the item
    (key, line, status, variables, the error that ended it) and its run in the run's public shape
    (runs.api.serializers.RunSerializer, as GET /api/v1/runs/{id} returns it), or null when no run
    was made (refused at dispatch, canceled first, or still pending)."""
    run = item.run
    error: dict[str, str] | None = None
    if run is not None and run.error_code:
        error = {"code": run.error_code, "message": run.error_message}
    elif run is None and item.error_code:
        error = {"code": item.error_code, "message": item.error_message}
    return {
        "key": item.key,
        "line": item.line,
        "status": item.status,
        "variables": item.variables,
        "error": error,
        "run": RunSerializer(run).data if run is not None else None,
    }
