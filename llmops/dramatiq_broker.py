"""The Redis broker of the production shape, with the queues a client may be waiting on polled briskly.

Dramatiq's Redis consumer polls an empty queue with an exponential backoff up to the worker's idle
timeout (`--worker-timeout`, 1 s by default). A client blocked on `POST /api/v1/runs?wait=` pays that
pick-up delay on every run that reaches an idle worker: about 40 ms at p50 in the benchmark
(bench/README.md). The queues named in DRAMATIQ_BRISK_QUEUES are polled at least every
DRAMATIQ_BRISK_POLL_MS instead; the others (batches, webhooks, evals, every delay queue) keep the
worker's timeout, so an idle worker process adds a hundred small Redis calls a second, not thousands.
"""

from typing import Any

from dramatiq.broker import Consumer
from dramatiq.brokers.redis import RedisBroker as _RedisBroker


class RedisBroker(_RedisBroker):
    def __init__(self, *, brisk_queues: tuple[str, ...] = (), brisk_poll_ms: int = 10, **options: Any) -> None:
        super().__init__(**options)
        self.brisk_queues = frozenset(brisk_queues)
        self.brisk_poll_ms = brisk_poll_ms

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        if queue_name in self.brisk_queues:
            timeout = min(timeout, self.brisk_poll_ms)
        return super().consume(queue_name, prefetch, timeout)
