"""Dramatiq actors of the runs app. They take ids only and delegate to services.

Recovery is not an actor: it runs in a loop thread of every worker (runs.recovery), so a broker that
comes back empty cannot take the schedule with it.
"""

import dramatiq
from django.conf import settings

from runs import batch_services, services


# Transient provider errors are retried by services.run_execute itself (it knows the attempt count
# and the provider's Retry-After); Dramatiq's own retries only cover crashes before the run is
# claimed. A redelivery of a claimed run is a no-op while its worker's lease lives, and takes the
# run over once the lease lapsed (the worker died).
@dramatiq.actor(
    queue_name="runs",
    max_retries=3,
    time_limit=settings.RUN_TIME_LIMIT_S * 1000,
    min_backoff=1000,
    max_backoff=60_000,
)
def execute_run(run_id: str) -> None:
    services.run_execute(run_id=run_id)


# Idempotent under the batch's row lock, so a redelivery or a retry after a crash dispatches nothing
# twice; each finished batch run sends one (runs.services.run_finish).
@dramatiq.actor(queue_name="batches", max_retries=5, time_limit=300_000, min_backoff=1000, max_backoff=30_000)
def dispatch_batch(batch_id: str) -> None:
    batch_services.batch_dispatch(batch_id=batch_id)
