"""The production broker polls the runs queue briskly and every other queue at the worker's timeout."""

import os

import dramatiq
import pytest

from llmops.dramatiq_broker import RedisBroker


def test_the_brisk_queues_poll_at_most_every_brisk_poll_ms():
    broker = RedisBroker(url="redis://127.0.0.1:6379/13", brisk_queues=("runs",), brisk_poll_ms=10)

    assert broker.consume("runs", prefetch=4, timeout=1000).timeout == 10
    assert broker.consume("batches", prefetch=4, timeout=1000).timeout == 1000
    assert broker.consume("runs.DQ", prefetch=4, timeout=1000).timeout == 1000  # delayed retries wait anyway
    assert broker.consume("runs", prefetch=4, timeout=5).timeout == 5  # never slower than asked


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="the Redis broker is the production shape's")
def test_the_settings_make_the_runs_queue_brisk():
    broker = dramatiq.get_broker()

    assert isinstance(broker, RedisBroker)
    assert broker.brisk_queues == {"runs"} and broker.brisk_poll_ms == 10
