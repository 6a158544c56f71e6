"""Dramatiq middleware of the runs app (loaded by the broker before Django's apps are ready, so it
imports no models)."""

from typing import Any

import dramatiq
from django.conf import settings


class StartRecovery(dramatiq.Middleware):
    """Starts the periodic `recover_runs` chain when a worker boots (see runs.tasks.recover_runs)."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if settings.RUN_RECOVER_INTERVAL_S > 0:
            broker.get_actor("recover_runs").send()
