"""Writes for batches: many runs of one prompt version, one per item, at most `concurrency` in flight.

- Creation (`batch_create`) streams its rows: every row is validated against the version as it is
  read and written in chunks, all in one transaction, so a bad row creates nothing (unless
  `skip_invalid`) and no more than one chunk of rows is held in memory.
- Dispatch (`batch_dispatch`, the `dispatch_batch` actor's work) creates runs for the next pending
  items through `runs.services.run_create`, so budgets, rate limits, provider checks and rendering
  apply as to any run. Each batch run that finishes dispatches its batch again (runs.services
  sends the message when it finishes the run), and recovery re-dispatches stalled batches
  (`batches_recover`).
"""

import contextlib
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import APIKey, Project, User
from llmops.errors import Conflict, DomainError, FieldErrors, ValidationFailed
from llmops.queue import send_or_log
from prompts import services as prompt_services
from prompts.models import PromptVersion
from prompts.rendering import RenderError
from providers.checks import model_check
from runs import checks
from runs import services as run_services
from runs.batch_files import BatchRow, row_key, typed_cells
from runs.batch_selectors import CHUNK_SIZE, batch_event_payload
from runs.models import Batch, BatchItem, Run
from runs.signals import batch_completed
from webhooks.models import WebhookEvent
from webhooks.services import webhook_emit

logger = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4

MIN_CONCURRENCY = 1

MAX_CONCURRENCY = 64

MAX_KEY_LENGTH = 200
# Rows per INSERT while creating, and per fetch while exporting.

DISPATCH_SCAN_LIMIT = 500

_ACTIVE_RUN = (Run.Status.QUEUED, Run.Status.RUNNING)


@dataclass(frozen=True)
class SkippedRow:
    line: int
    key: str | None
    fields: FieldErrors


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
        variables = typed_cells(variables, version.variables)
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
    project: Project,
    created_by: User | None,
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
    prompt_version = checks.prompt_version_check(
        project=project, prompt_ref=prompt, prompt_version_id=None, version=version, label=label
    )
    # An unusable model is one 400 now rather than every item failing later.
    model_check(model=prompt_version.model, field="prompt")

    max_items = settings.BATCH_MAX_ITEMS
    max_errors = settings.BATCH_MAX_REPORTED_ERRORS
    errors: FieldErrors = {}
    skipped: list[SkippedRow] = []
    bad_rows = 0
    read = 0
    seen: dict[str, int] = {}  # key -> line: keys only, a few MB for the largest batch
    with transaction.atomic():
        batch = Batch.objects.create(
            project=project,
            created_by=created_by,
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


def _send_dispatch(batch_id: uuid.UUID | str, delay_ms: int | None = None) -> None:
    """Sends a dispatch message. Never raises: with the broker down the batch stays active, and
    recovery (batches_recover) dispatches it again once the broker is back."""
    from runs.tasks import dispatch_batch  # the actor module imports this one

    send_or_log(dispatch_batch, str(batch_id), delay_ms=delay_ms, what="batch dispatch", batch_id=str(batch_id))


def _pending(batch: Batch) -> QuerySet[BatchItem]:
    return BatchItem.objects.filter(batch=batch, run__isnull=True, error_code="").order_by("line")


def _dispatch_item(batch: Batch, item: BatchItem) -> DomainError | None:
    """Creates the item's run, or records why it was refused. Returns a 429 to stop dispatching."""
    try:
        with transaction.atomic():  # a savepoint: a refused item leaves no run behind
            run, _ = run_services.run_create(
                project=batch.project,
                created_by=batch.created_by,
                api_key=batch.api_key,
                prompt_version_id=batch.prompt_version_id,
                variables=item.variables,
                params=batch.params,
                metadata={"batch": str(batch.pk), "batch_item": item.key},
            )
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
    if limit is None or Run.objects.filter(batch_item__batch_id=batch_id, status__in=_ACTIVE_RUN).count() >= limit:
        return 0
    with transaction.atomic():
        # The UPDATE takes the write lock on SQLite too, where select_for_update is a no-op.
        if not Batch.objects.filter(pk=batch_id, status__in=Batch.ACTIVE).update(updated_at=now):
            return 0  # finished, canceled or unknown: nothing to do
        batch = Batch.objects.select_for_update(of=("self",)).select_related("project", "api_key").get(pk=batch_id)
        if batch.status == Batch.Status.QUEUED:
            batch.status = Batch.Status.RUNNING
            batch.save(update_fields=["status", "updated_at"])
        in_flight = Run.objects.filter(batch_item__batch=batch, status__in=_ACTIVE_RUN).count()
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
        project=batch.project,
        event=WebhookEvent.BATCH_COMPLETED,
        payload=batch_event_payload(batch),
        dedupe_key=f"batch.completed:{batch.pk}",
    )
    logger.info("batch completed", extra={"batch_id": str(batch.pk)})
    batch_id = batch.pk
    transaction.on_commit(lambda: batch_completed.send(sender=Batch, batch_id=batch_id))


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
            for run in Run.objects.filter(batch_item__batch=batch, status=Run.Status.QUEUED).only("pk", "status"):
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
