"""Leases on running runs: how a worker proves it is still alive while a provider call is in flight.

A worker that claims a run (runs.services.run_execute) holds it here for the length of the call.
One heartbeat thread per process renews the lease of every run the process holds, every third of
RUN_LEASE_S, so a live worker never loses a run, however long the call. A worker that dies (killed,
machine lost) renews nothing: its leases lapse within RUN_LEASE_S, and recovery or a redelivered
message takes the run over (attempt number + 1). A lease is keyed by the attempt number, so a
worker that was merely slow cannot renew or finish a run that another worker took over.

A lease is never renewed past the run's time limit: a thread stuck beyond it loses the run.
"""

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from runs.models import Run

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_held: dict[uuid.UUID, int] = {}  # run id -> the attempt number this process holds
_heartbeat: threading.Thread | None = None
_stop = threading.Event()


def lease_until(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + timedelta(seconds=settings.RUN_LEASE_S)


@contextmanager
def held(run_id: uuid.UUID, attempt: int) -> Iterator[None]:
    """Keeps the lease of `attempt` of the run renewed while the block runs."""
    _ensure_heartbeat()
    with _lock:
        _held[run_id] = attempt
    try:
        yield
    finally:
        with _lock:
            _held.pop(run_id, None)


def held_runs() -> dict[uuid.UUID, int]:
    with _lock:
        return dict(_held)


def renew() -> int:
    """Renews the lease of every run this process holds. Returns how many were renewed."""
    now = timezone.now()
    renewed = 0
    for run_id, attempt in held_runs().items():
        renewed += Run.objects.filter(
            pk=run_id,
            status=Run.Status.RUNNING,
            attempts=attempt,
            started_at__gt=now - timedelta(seconds=settings.RUN_TIME_LIMIT_S),
        ).update(lease_expires_at=lease_until(now))
    return renewed


def _beat() -> None:
    interval = max(0.2, settings.RUN_LEASE_S / 3)
    while not _stop.wait(interval):
        try:
            close_old_connections()
            renew()
        except Exception:  # a database hiccup must not end the heartbeat: the next beat tries again
            logger.warning("run lease renewal failed", exc_info=True)
        if not held_runs():
            connection.close()  # an idle process keeps no connection open for the heartbeat
    connection.close()


def _ensure_heartbeat() -> None:
    global _heartbeat
    with _lock:
        if _heartbeat is None or not _heartbeat.is_alive():
            _stop.clear()
            _heartbeat = threading.Thread(target=_beat, name="run-lease-heartbeat", daemon=True)
            _heartbeat.start()


def stop_heartbeat() -> None:
    """Stops renewing (a worker shutting down); runs still held then are handed back by the caller."""
    global _heartbeat
    _stop.set()
    with _lock:
        thread, _heartbeat = _heartbeat, None
    if thread is not None:
        thread.join(timeout=5)
