"""Batches: many runs of one prompt version, one per item, with at most `concurrency` in flight.

- Creation (`batch_create`) streams its rows: every row is validated against the version as it is
  read and written in chunks, all in one transaction, so a bad row creates nothing (unless
  `skip_invalid`) and no more than one chunk of rows is held in memory.
- Dispatch (`batch_dispatch`, the `dispatch_batch` actor's work) creates runs for the next pending
  items through `services.run_create`, so budgets, rate limits, provider checks and rendering apply
  as to any run. Each batch run that finishes dispatches its batch again (`on_run_finished`, called
  by runs.services), and recovery re-dispatches unfinished batches (`batches_recover`).
- Progress, tokens and cost are aggregates over the items and their runs, never stored counters.

Reads (lists, progress, results export) are here too, so the whole feature is in one module.
"""

import codecs
import contextlib
import csv
import io
import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, DecimalField, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import APIKey, User
from llmops.errors import Conflict, DomainError, FieldErrors, NotFound, ValidationFailed
from llmops.parsers import json_loads
from prompts import services as prompt_services
from prompts.models import PromptVersion
from prompts.rendering import RenderError
from runs import services as run_services
from runs.models import Batch, BatchItem, Run
from webhooks.models import WebhookEvent
from webhooks.services import webhook_emit

logger = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4
MIN_CONCURRENCY = 1
MAX_CONCURRENCY = 64
MAX_KEY_LENGTH = 200
# Rows per INSERT while creating, and per fetch while exporting.
CHUNK_SIZE = 500
# Items one dispatch call examines at most; refused items free their slot at once, so without a
# bound a batch whose every item is refused would be walked end to end in one transaction.
DISPATCH_SCAN_LIMIT = 500
PENDING = "pending"
ITEM_STATUSES = (PENDING, *Run.Status.values)
# Item outcomes the command writes to its output; canceled items are left for a rerun.
WRITTEN_STATUSES = (Run.Status.SUCCEEDED, Run.Status.FAILED)
_ACTIVE_RUN = (Run.Status.QUEUED, Run.Status.RUNNING)


# --- rows: what callers give, parsed from inline JSON, JSON Lines or CSV -----------------------------


@dataclass(frozen=True)
class BatchRow:
    """One input row. `line` is the file's line number (1-based, as an editor shows it) or, for
    inline JSON, the index in `items`; errors name it as `items.<line>`."""

    line: int
    variables: Any
    key: Any = None  # the caller's key (a string or integer) or None for "the line number"
    # CSV cells are all strings: convert them to the version's declared variable types.
    text_values: bool = False
    problems: FieldErrors | None = None  # set when the row could not even be read


@dataclass(frozen=True)
class SkippedRow:
    line: int
    key: str | None
    fields: FieldErrors


def rows_from_items(items: Iterable[Any]) -> Iterator[BatchRow]:
    """Inline items: `{"variables": {...}, "key": "..."}` each; `line` is the 0-based index."""
    for index, item in enumerate(items):
        where = f"items.{index}"
        if not isinstance(item, dict):
            yield BatchRow(index, None, problems={where: ['Must be an object: {"variables": {...}, "key": "..."}.']})
            continue
        unknown = sorted(set(item) - {"variables", "key"})
        if unknown:
            yield BatchRow(index, None, problems={f"{where}.{name}": ["Unknown field."] for name in unknown})
            continue
        yield BatchRow(index, item.get("variables", {}), item.get("key"))


def text_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """UTF-8 lines (a BOM is dropped) of a binary file iterated line by line, such as an upload."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    for number, raw in enumerate(chunks, start=1):
        try:
            # Lines split at b"\n" never cut a UTF-8 sequence, so each decodes on its own.
            yield decoder.decode(raw)
        except UnicodeDecodeError:
            raise ValidationFailed(
                f"The file is not UTF-8 text (line {number}).", fields={f"items.{number}": ["Not UTF-8."]}
            ) from None


def rows_from_jsonl(lines: Iterable[str]) -> Iterator[BatchRow]:
    """JSON Lines: each line `{"variables": {...}, "key": ...}` or a bare variables object. Blank
    lines are skipped (their numbers still count)."""
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        where = f"items.{number}"
        try:
            value = json_loads(text)  # the API's bounds: a deeply nested line is a bad row, not a 500
        except ValueError as exc:
            yield BatchRow(number, None, problems={where: [f"Invalid JSON: {exc}."]})
            continue
        if not isinstance(value, dict):
            yield BatchRow(number, None, problems={where: ["Each line must be a JSON object."]})
        elif "variables" in value and set(value) <= {"variables", "key"}:
            yield BatchRow(number, value["variables"], value.get("key"))
        else:
            yield BatchRow(number, value)


def rows_from_csv(lines: Iterable[str]) -> Iterator[BatchRow]:
    """CSV with a header row of variable names, plus an optional `key` column. Cells are converted
    to the declared types when the batch is created; an empty cell means "not given" (so a
    default applies). `lines` must keep their line endings, for quoted multi-line cells."""
    reader = csv.reader(lines)
    try:
        header = next(reader, None)
        if header is None:
            return
        names = [name.strip() for name in header]
        if not all(names) or len(set(names)) != len(names):
            raise ValidationFailed(
                "The CSV header must name each column once.",
                fields={"items.1": ["Empty or repeated column name in the header row."]},
            )
        end = reader.line_num
        for record in reader:
            start, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != len(names):
                yield BatchRow(
                    start, None, problems={f"items.{start}": [f"Expected {len(names)} fields, got {len(record)}."]}
                )
                continue
            cells = {name: cell for name, cell in zip(names, record, strict=True) if cell != ""}
            key = cells.pop("key", None)
            yield BatchRow(start, cells, key, text_values=True)
    except csv.Error as exc:
        line = reader.line_num
        raise ValidationFailed(f"CSV error on line {line}: {exc}.", fields={f"items.{line}": [str(exc)]}) from None


def _from_text(values: dict[str, Any], schema: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """CSV cells as the declared types; a cell that does not convert stays a string, so the
    renderer reports the expected type."""
    typed: dict[str, Any] = {}
    for name, value in values.items():
        type_name = schema.get(name, {}).get("type", "string")
        if type_name == "string":
            typed[name] = value
        elif type_name == "boolean":
            typed[name] = {"true": True, "false": False, "1": True, "0": False}.get(value.strip().lower(), value)
        else:
            try:
                typed[name] = json_loads(value)
            except ValueError:
                typed[name] = value
    return typed


def row_key(row: BatchRow) -> str | None:
    """The key a row's item gets: the caller's, or its line number. None when the key is unusable."""
    if row.key is None or row.key == "":
        return str(row.line)
    if isinstance(row.key, bool) or not isinstance(row.key, (str, int)):
        return None
    return str(row.key)


# --- create --------------------------------------------------------------------------------------


def _row_problems(row: BatchRow, version: PromptVersion, seen: dict[str, int]) -> tuple[str | None, Any, FieldErrors]:
    """(key, variables as stored, problems) of one row; problems are keyed `items.<line>.<field>`."""
    where = f"items.{row.line}"
    if row.problems:
        return None, None, row.problems
    problems: FieldErrors = {}
    key = row_key(row)
    if key is None:
        problems[f"{where}.key"] = ["Must be a string."]
    elif len(key) > MAX_KEY_LENGTH:
        problems[f"{where}.key"] = [f"At most {MAX_KEY_LENGTH} characters."]
    elif key in seen:
        problems[f"{where}.key"] = [f"Duplicate key: line {seen[key]} has it too."]
    variables = row.variables
    if row.text_values and isinstance(variables, dict):
        variables = _from_text(variables, version.variables)
    try:
        prompt_services.prompt_render(version=version, values=variables)
    except RenderError as exc:
        for field, messages in exc.fields.items():
            problems[f"{where}.{field}"] = messages
        if not exc.fields:
            problems[where] = [exc.message]
    return key, variables, problems


def batch_create(
    *,
    owner: User,
    api_key: APIKey | None,
    prompt: str,
    version: int | None = None,
    label: str | None = None,
    items: Iterable[BatchRow],
    concurrency: int = DEFAULT_CONCURRENCY,
    params: dict[str, Any] | None = None,
    skip_invalid: bool = False,
    name: str = "",
    metadata: dict[str, Any] | None = None,
) -> tuple[Batch, list[SkippedRow]]:
    """Creates a batch of `items` (streamed: read once, never all held) and dispatches it after commit.

    The version is resolved once (a label's move later does not affect the batch); every row is
    rendered against it up front. A bad row creates nothing: up to BATCH_MAX_REPORTED_ERRORS bad
    rows are reported by line in the error's fields. With `skip_invalid`, bad rows are left out
    and returned (the first BATCH_MAX_REPORTED_ERRORS of them; `skipped_count` counts all).
    """
    if not MIN_CONCURRENCY <= concurrency <= MAX_CONCURRENCY:
        raise ValidationFailed(
            "Invalid concurrency.", fields={"concurrency": [f"Must be between 1 and {MAX_CONCURRENCY}."]}
        )
    overrides = prompt_services.validate_params(params or {})
    prompt_version = run_services._resolve_version(
        owner=owner, prompt_ref=prompt, prompt_version_id=None, version=version, label=label
    )
    # An unusable model is one 400 now rather than every item failing later.
    run_services._provider_for(prompt_version.model, field="prompt")

    max_items = settings.BATCH_MAX_ITEMS
    max_errors = settings.BATCH_MAX_REPORTED_ERRORS
    errors: FieldErrors = {}
    skipped: list[SkippedRow] = []
    bad_rows = 0
    read = 0
    seen: dict[str, int] = {}  # key -> line: keys only, a few MB for the largest batch
    with transaction.atomic():
        batch = Batch.objects.create(
            owner=owner,
            api_key=api_key,
            prompt_version=prompt_version,
            name=name,
            metadata=metadata or {},
            params=overrides,
            concurrency=concurrency,
        )
        chunk: list[BatchItem] = []
        for row in items:
            read += 1
            if read > max_items:
                raise ValidationFailed(
                    f"Too many items: at most {max_items} per batch.",
                    fields={"items": [f"At most {max_items} items."]},
                    code="too_many_items",
                )
            key, variables, problems = _row_problems(row, prompt_version, seen)
            if problems:
                bad_rows += 1
                if skip_invalid:
                    if len(skipped) < max_errors:
                        skipped.append(SkippedRow(row.line, key, problems))
                    continue
                errors.update(problems)
                if bad_rows >= max_errors:
                    break
                continue
            assert key is not None
            seen[key] = row.line
            if errors:
                continue  # failing already: only validate the rest
            chunk.append(BatchItem(batch=batch, line=row.line, key=key, variables=variables))
            if len(chunk) >= CHUNK_SIZE:
                BatchItem.objects.bulk_create(chunk)
                chunk = []
        if errors:
            more = " (the first ones; validation stopped there)" if bad_rows >= max_errors else ""
            raise ValidationFailed(
                f"{bad_rows} item(s) are invalid{more}; nothing was created.", fields=errors, code="invalid_items"
            )
        BatchItem.objects.bulk_create(chunk)
        valid = read - bad_rows
        if valid == 0:
            fields: FieldErrors = {"items": ["No valid items."]}
            for row_skipped in skipped:
                fields.update(row_skipped.fields)
            raise ValidationFailed("The batch has no valid items.", fields=fields, code="no_items")
        batch.item_count = valid
        batch.skipped_count = bad_rows
        batch.save(update_fields=["item_count", "skipped_count", "updated_at"])
        batch_id = batch.pk
        transaction.on_commit(lambda: _send_dispatch(batch_id))
    logger.info("batch created", extra={"batch_id": str(batch.pk), "items": valid, "skipped": bad_rows})
    return batch, skipped


# --- dispatch ------------------------------------------------------------------------------------


def _send_dispatch(batch_id: uuid.UUID | str, delay_ms: int | None = None) -> None:
    """Sends a dispatch message. Never raises: with the broker down the batch stays active, and
    recovery (batches_recover) dispatches it again once the broker is back."""
    from runs.tasks import dispatch_batch  # the actor module imports this one

    try:
        dispatch_batch.send_with_options(args=(str(batch_id),), delay=delay_ms)
    except Exception:
        logger.warning(
            "batch dispatch not sent; recovery will send it", extra={"batch_id": str(batch_id)}, exc_info=True
        )


def _pending(batch: Batch) -> QuerySet[BatchItem]:
    return BatchItem.objects.filter(batch=batch, run__isnull=True, error_code="").order_by("line")


def _dispatch_item(batch: Batch, item: BatchItem) -> DomainError | None:
    """Creates the item's run, or records why it was refused. Returns a 429 to stop dispatching."""
    try:
        with transaction.atomic():  # a savepoint: a refused item leaves no run behind
            run, _ = run_services.run_create(
                owner=batch.owner,
                api_key=batch.api_key,
                prompt_version_id=batch.prompt_version_id,
                variables=item.variables,
                params=batch.params,
                metadata={"batch": str(batch.pk), "batch_item": item.key},
            )
            Run.objects.filter(pk=run.pk).update(batch=batch)
            item.run = run
            item.save(update_fields=["run", "updated_at"])
    except DomainError as exc:
        if exc.status_code == HTTPStatus.TOO_MANY_REQUESTS:
            return exc  # a rate limit lifts by itself: the item stays pending
        item.error_code = exc.code[:64]
        item.error_message = exc.message
        item.save(update_fields=["error_code", "error_message", "updated_at"])
        logger.info(
            "batch item refused",
            extra={"batch_id": str(batch.pk), "item": item.key, "error_code": exc.code},
        )
    return None


def batch_dispatch(*, batch_id: uuid.UUID | str) -> int:
    """Creates runs for the next pending items, up to the batch's concurrency, and completes the
    batch once nothing is pending or in flight. Returns how many runs it created.

    Idempotent and safe to run concurrently: in-flight runs are counted under the batch's row lock,
    so a repeated call never exceeds the limit nor dispatches an item twice. Refused items (a budget
    exceeded, a provider disabled since) record their error and count as failed; a 429 (tokens per
    minute) stops dispatching and tries again after its Retry-After.
    """
    now = timezone.now()
    created = 0
    # Without a free slot there is nothing to do, and no need to take the lock: each run counted
    # here dispatches again once it finishes (on_run_finished). Saves a write per redundant message.
    concurrency = Batch.objects.filter(pk=batch_id, status__in=Batch.ACTIVE).values_list("concurrency", flat=True)
    limit = concurrency.first()
    if limit is None or Run.objects.filter(batch_id=batch_id, status__in=_ACTIVE_RUN).count() >= limit:
        return 0
    with transaction.atomic():
        # The UPDATE takes the write lock on SQLite too, where select_for_update is a no-op.
        if not Batch.objects.filter(pk=batch_id, status__in=Batch.ACTIVE).update(updated_at=now):
            return 0  # finished, canceled or unknown: nothing to do
        batch = Batch.objects.select_for_update(of=("self",)).select_related("owner", "api_key").get(pk=batch_id)
        if batch.status == Batch.Status.QUEUED:
            batch.status = Batch.Status.RUNNING
            batch.save(update_fields=["status", "updated_at"])
        in_flight = Run.objects.filter(batch=batch, status__in=_ACTIVE_RUN).count()
        free = batch.concurrency - in_flight
        examined = 0
        exhausted = False  # no pending item is left
        throttled: DomainError | None = None
        while free > 0 and throttled is None and examined < DISPATCH_SCAN_LIMIT:
            items = list(_pending(batch)[: min(free, DISPATCH_SCAN_LIMIT - examined)])
            if not items:
                exhausted = True
                break
            for item in items:
                examined += 1
                throttled = _dispatch_item(batch, item)
                if throttled is not None:
                    break
                if item.run_id is not None:
                    created += 1
                    free -= 1
        if throttled is not None:
            delay_s = throttled.retry_after or settings.BATCH_THROTTLE_RETRY_S
            logger.info("batch dispatch throttled", extra={"batch_id": str(batch.pk), "retry_in_s": delay_s})
            transaction.on_commit(lambda: _send_dispatch(batch.pk, int(delay_s * 1000)))
        elif exhausted and in_flight + created == 0:
            # A run counted in flight above that finishes meanwhile dispatches again after us.
            _complete(batch, now=now)
        elif not exhausted and free > 0:
            transaction.on_commit(lambda: _send_dispatch(batch.pk))  # scan limit reached: go on in a new call
    return created


def _complete(batch: Batch, *, now: datetime) -> None:
    batch.status = Batch.Status.COMPLETED
    batch.finished_at = now
    batch.save(update_fields=["status", "finished_at", "updated_at"])
    # In the same transaction as the status, so the event exists exactly when the fact does.
    webhook_emit(
        owner=batch.owner,
        event=WebhookEvent.BATCH_COMPLETED,
        payload=batch_event_payload(batch),
        dedupe_key=f"batch.completed:{batch.pk}",
    )
    logger.info("batch completed", extra={"batch_id": str(batch.pk)})


def on_run_finished(run: Run) -> None:
    """Called by runs.services wherever a run finishes (succeeded, failed or canceled): a batch's
    run frees a slot, so its batch is dispatched again once that finish commits."""
    batch_id = run.batch_id
    if batch_id is not None:
        transaction.on_commit(lambda: _send_dispatch(batch_id))


def batches_recover(*, limit: int = 1000, idle_for: timedelta | None = None) -> int:
    """Dispatches again the unfinished batches that no dispatch touched for `idle_for` (default: the
    recovery interval): a dispatch message lost with its broker, or never sent because the broker was
    down, would otherwise stall a batch. A redundant dispatch is harmless (batch_dispatch)."""
    idle_for = idle_for if idle_for is not None else timedelta(seconds=settings.RUN_RECOVER_INTERVAL_S)
    batch_ids = list(
        Batch.objects.filter(status__in=Batch.ACTIVE, updated_at__lt=timezone.now() - idle_for)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    for batch_id in batch_ids:
        _send_dispatch(batch_id)
    return len(batch_ids)


# --- cancel --------------------------------------------------------------------------------------


def batch_cancel(*, batch: Batch) -> Batch:
    """Cancels a queued or running batch: pending items and queued runs never execute; runs already
    running finish and are recorded. 409 once the batch is completed or canceled."""
    now = timezone.now()
    with transaction.atomic():
        # Conditional and on the batch row: waits for a dispatch in progress, then none follows.
        updated = Batch.objects.filter(pk=batch.pk, status__in=Batch.ACTIVE).update(
            status=Batch.Status.CANCELED, finished_at=now, updated_at=now
        )
        if updated:
            BatchItem.objects.filter(batch=batch, run__isnull=True, error_code="").update(
                error_code=BatchItem.CANCELED_CODE,
                error_message="The batch was canceled before this item ran.",
                updated_at=now,
            )
            for run in Run.objects.filter(batch=batch, status=Run.Status.QUEUED).only("pk", "status"):
                # A run a worker claimed meanwhile (409) runs to its end; run_cancel releases budget holds.
                with contextlib.suppress(Conflict):
                    run_services.run_cancel(run=run)
    batch.refresh_from_db()
    if not updated:
        raise Conflict(
            f"The batch is {batch.status}; only queued or running batches can be canceled.", code="not_cancelable"
        )
    logger.info("batch canceled", extra={"batch_id": str(batch.pk)})
    return batch


# --- reads ---------------------------------------------------------------------------------------


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


def batch_list(*, owner: User, status: str | None = None) -> QuerySet[Batch]:
    """The owner's batches, newest first, with their progress."""
    batches = Batch.objects.filter(owner=owner)
    if status:
        batches = batches.filter(status=status)
    return with_progress(batches.select_related("prompt_version__prompt")).order_by("-created_at")


def batch_get(*, owner: User, batch_id: Any) -> Batch:
    try:
        pk = uuid.UUID(str(batch_id))
    except ValueError:
        raise NotFound("Batch not found.") from None
    batch = batch_list(owner=owner).filter(pk=pk).first()
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
    items = BatchItem.objects.filter(batch=batch).select_related("run__cost_log")
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
    """One item's outcome, as exported (JSON Lines) and as the batch_run command writes it."""
    run = item.run
    cost_log = getattr(run, "cost_log", None) if run is not None else None
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
        "output": run.output if run is not None else None,
        "usage": (
            {
                "prompt_tokens": run.prompt_tokens,
                "completion_tokens": run.completion_tokens,
                "total_tokens": run.total_tokens,
            }
            if run is not None and run.total_tokens is not None
            else None
        ),
        # A decimal string, never a float; null when not charged or the price is unknown.
        "cost": str(cost_log.total_cost) if cost_log is not None and cost_log.total_cost is not None else None,
        "latency_ms": run.latency_ms if run is not None else None,
        "error": error,
        "run_id": str(run.pk) if run is not None else None,
    }


CSV_COLUMNS = [
    "key",
    "line",
    "status",
    "variables",
    "output",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "latency_ms",
    "error_code",
    "error_message",
    "run_id",
]


def _csv_row(result: dict[str, Any]) -> list[Any]:
    usage = result["usage"] or {}
    error = result["error"] or {}
    return [
        result["key"],
        result["line"],
        result["status"],
        json.dumps(result["variables"], ensure_ascii=False),
        result["output"] or "",
        usage.get("prompt_tokens", ""),
        usage.get("completion_tokens", ""),
        usage.get("total_tokens", ""),
        result["cost"] or "",
        result["latency_ms"] if result["latency_ms"] is not None else "",
        error.get("code", ""),
        error.get("message", ""),
        result["run_id"] or "",
    ]


def results_jsonl(batch: Batch) -> Iterator[bytes]:
    """The batch's results as JSON Lines, one item per line, fetched CHUNK_SIZE items at a time."""
    for item in batch_items(batch=batch).iterator(chunk_size=CHUNK_SIZE):
        yield (json.dumps(item_result(item), ensure_ascii=False) + "\n").encode()


def results_csv(batch: Batch) -> Iterator[bytes]:
    """The batch's results as CSV (header row first), fetched CHUNK_SIZE items at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> bytes:
        data = buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        return data

    writer.writerow(CSV_COLUMNS)
    yield flush()
    for item in batch_items(batch=batch).iterator(chunk_size=CHUNK_SIZE):
        writer.writerow(_csv_row(item_result(item)))
        yield flush()
