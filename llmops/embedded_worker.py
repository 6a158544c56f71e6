"""The embedded default: with no Redis, the web process runs a Dramatiq worker in threads on the
in-process StubBroker, so `make run` needs nothing but Python. With REDIS_URL, workers are separate
`manage.py rundramatiq` processes and this does nothing."""

import logging
import threading

import dramatiq
from django.conf import settings
from django.utils.module_loading import autodiscover_modules
from dramatiq.brokers.stub import StubBroker

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_worker: dramatiq.Worker | None = None


def start() -> dramatiq.Worker | None:
    global _worker
    broker = dramatiq.get_broker()
    if not settings.EMBEDDED_WORKER or not isinstance(broker, StubBroker):
        return None
    with _lock:
        if _worker is None:
            autodiscover_modules(*settings.DRAMATIQ_AUTODISCOVER_MODULES)
            broker.emit_after("process_boot")
            _worker = dramatiq.Worker(broker, worker_threads=settings.EMBEDDED_WORKER_THREADS, worker_timeout=200)
            _worker.start()
            logger.info("embedded dramatiq worker started", extra={"threads": settings.EMBEDDED_WORKER_THREADS})
    return _worker
