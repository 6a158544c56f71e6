"""Reads for runs, always scoped to their project."""

import time
import uuid
from datetime import datetime

from django.db.models import QuerySet

from accounts.models import Project
from llmops.errors import NotFound
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


def run_wait(*, project: Project, run_id: uuid.UUID, seconds: float, poll_interval: float = 0.1) -> Run:
    """The run once finished, or as it is after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        run = run_get(project=project, run_id=str(run_id))
        if run.is_finished or time.monotonic() >= deadline:
            return run
        time.sleep(min(poll_interval, max(0.0, deadline - time.monotonic())))


# How long the health check waits for one provider's model listing: a monitor must not hang on one.
