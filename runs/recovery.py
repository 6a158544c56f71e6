"""Periodic recovery: a loop thread in every worker process, so the schedule lives in the workers
and not in the broker.

Each pass sends what the broker never got and takes back what dead workers held (runs, batch
dispatches, webhook deliveries). A loop thread rather than a scheduler library: one job at one
interval needs no cron syntax, job store or executor, and a thread started by the worker's own boot
hook (runs.dramatiq_middleware) lives and dies with the process that does the work. Every step of a
pass is a conditional UPDATE, so the passes of many workers at once do each thing once; the jitter
keeps them from arriving together.
"""

import logging
import random
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import close_old_connections, connection

from runs import batch_services, services
from webhooks.services import webhook_deliveries_recover

logger = logging.getLogger(__name__)

# Steps of the apps above runs, which runs cannot import (evals: experiments to score), by name;
# each returns how many things it did. Registered in their AppConfig.ready().
_steps: dict[str, Callable[[], int]] = {}


def recovery_step_register(name: str, step: Callable[[], int]) -> None:
    _steps[name] = step


def recover_once() -> dict[str, int]:
    """One pass over runs, batches, webhook deliveries and the registered steps. Returns what it did, by kind."""
    counts = services.runs_recover()
    counts["batches"] = batch_services.batches_recover()
    counts["webhooks"] = webhook_deliveries_recover()
    for name, step in _steps.items():
        counts[name] = step()
    return counts


class RecoveryLoop:
    """Runs recover_once every RUN_RECOVER_INTERVAL_S (+-20 %) in a daemon thread until stopped."""

    def __init__(self, interval: float | None = None) -> None:
        self.interval = settings.RUN_RECOVER_INTERVAL_S if interval is None else interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="runs-recovery", daemon=True)

    def start(self) -> "RecoveryLoop":
        self._thread.start()
        logger.info("recovery loop started", extra={"interval_s": self.interval})
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        # The first pass soon after boot: what a crash left behind is picked up at once.
        delay = random.uniform(0, min(self.interval, 2.0))
        while not self._stop.wait(delay):
            try:
                close_old_connections()
                recover_once()
            except Exception:  # the database or broker is down: the next pass tries again
                logger.warning("recovery pass failed", exc_info=True)
            delay = self.interval * random.uniform(0.8, 1.2)
        connection.close()
