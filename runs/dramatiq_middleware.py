"""Dramatiq middleware of the runs app (loaded by the broker before Django's apps are ready, so its
imports of the app's modules happen in the hooks)."""

from typing import Any

import dramatiq
from django.conf import settings


class RunsWorkerLifecycle(dramatiq.Middleware):
    """Starts the recovery loop when a worker boots; when it shuts down, hands back at once the runs
    it still holds (its threads did not finish them within the shutdown timeout).

    On SIGTERM Dramatiq stops taking messages, requeues the ones it prefetched and waits up to
    `--worker-shutdown-timeout` for the running ones; the lease heartbeat keeps renewing them all
    that while, so a deploy lets in-flight runs finish."""

    def __init__(self) -> None:
        self._loop: Any = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if settings.RUN_RECOVER_INTERVAL_S > 0:
            from runs.recovery import RecoveryLoop

            self._loop = RecoveryLoop().start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        from runs import leases, services

        if self._loop is not None:
            self._loop.stop()
            self._loop = None
        leases.stop_heartbeat()
        held = leases.held_runs()
        if held:
            services.runs_hand_back(held=held)
