"""Dramatiq actors of the runs app. They take ids only and delegate to services."""

from datetime import timedelta

import dramatiq
from django.conf import settings
from django.core.cache import cache

from runs import batches, services


# Transient provider errors are retried by services.run_execute itself (it knows the attempt count
# and the provider's Retry-After); Dramatiq's own retries only cover crashes before the run is
# claimed, and a redelivery of a claimed run is a no-op.
@dramatiq.actor(
    queue_name="runs",
    max_retries=3,
    time_limit=settings.RUN_TIME_LIMIT_S * 1000,
    min_backoff=1000,
    max_backoff=60_000,
)
def execute_run(run_id: str) -> None:
    services.run_execute(run_id=run_id)


_RECOVER_TICK_KEY = "runs:recover:tick"


@dramatiq.actor(queue_name="maintenance", max_retries=0, time_limit=120_000)
def recover_runs() -> None:
    """Periodic recovery. Each tick schedules the next; several workers may start a chain, but the
    cache key lets one tick per interval win and only the winner schedules the next."""
    interval = settings.RUN_RECOVER_INTERVAL_S
    if not cache.add(_RECOVER_TICK_KEY, "1", timeout=max(1, int(interval * 0.9))):
        return
    services.runs_recover(
        queued_for=timedelta(seconds=settings.RUN_RECOVER_QUEUED_AFTER_S),
        running_for=timedelta(seconds=settings.RUN_TIME_LIMIT_S + 60),
    )
    batches.batches_recover()  # batches whose dispatch was lost with a message or a failed run
    recover_runs.send_with_options(delay=interval * 1000)


# Idempotent under the batch's row lock, so a redelivery or a retry after a crash dispatches nothing
# twice; each finished batch run sends one (runs.batches.on_run_finished).
@dramatiq.actor(queue_name="batches", max_retries=5, time_limit=300_000, min_backoff=1000, max_backoff=30_000)
def dispatch_batch(batch_id: str) -> None:
    batches.batch_dispatch(batch_id=batch_id)
