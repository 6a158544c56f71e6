"""Reads for runs, always scoped to their project."""

import time
import uuid
from datetime import datetime

from django.conf import settings
from django.db.models import QuerySet

from accounts.models import Project
from llmops.errors import NotFound
from runs import notify
from runs.models import Run


def run_list(
    *,
    project: Project,
    prompt: str | None = None,
    version: int | None = None,
    status: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Run]:
    runs = Run.objects.filter(project=project).select_related("prompt_version__prompt", "cost_log")
    if prompt:
        try:
            runs = runs.filter(prompt_version__prompt_id=uuid.UUID(prompt))
        except ValueError:
            runs = runs.filter(prompt_version__prompt__name=prompt)
    if version is not None:
        runs = runs.filter(prompt_version__number=version)
    if status:
        runs = runs.filter(status=status)
    if created_after is not None:
        runs = runs.filter(created_at__gte=created_after)
    if created_before is not None:
        runs = runs.filter(created_at__lt=created_before)
    return runs.order_by("-created_at")


def run_get(*, project: Project, run_id: str) -> Run:
    try:
        pk = uuid.UUID(str(run_id))
    except ValueError:
        raise NotFound("Run not found.") from None
    run = run_list(project=project).filter(pk=pk).first()
    if run is None:
        raise NotFound("Run not found.")
    return run


def run_wait(*, project: Project, run_id: uuid.UUID, seconds: float, poll_interval: float | None = None) -> Run:
    """The run once finished, or as it is after `seconds`.

    Woken when the run finishes (runs.notify), so the answer follows the finish by a notification,
    not by a poll; the waiter is registered before the first read, so a run finishing in between is
    not missed. The run is also read every `poll_interval` (RUN_WAIT_POLL_S): a notification that was
    lost (Redis restarting or down) delays the answer by at most that, never past `seconds`.
    """
    if seconds <= 0:
        return run_get(project=project, run_id=str(run_id))
    poll = settings.RUN_WAIT_POLL_S if poll_interval is None else poll_interval
    deadline = time.monotonic() + seconds
    with notify.watching(run_id) as finished:
        while True:
            run = run_get(project=project, run_id=str(run_id))
            remaining = deadline - time.monotonic()
            if run.is_finished or remaining <= 0:
                return run
            finished.wait(min(poll, remaining))
            finished.clear()  # before the next read: a finish notified after it ends the next wait at once


# How long the health check waits for one provider's model listing: a monitor must not hang on one.
