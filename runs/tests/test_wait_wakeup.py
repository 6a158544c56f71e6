"""`?wait=` wakes when its run finishes (runs.notify), instead of polling the database.

In both CI passes: on the embedded default the finish wakes the waiter in-process; with REDIS_URL the
`rundramatiq` worker process publishes through Redis and this process's listener wakes it. Redis
faults use a Redis of the test's own (runs.tests.faults.Stack) or a closed port.

Not a benchmark: where the point is that no poll is needed, the safety poll (RUN_WAIT_POLL_S) is set
to 30 s and the bounds are generous (an answer within half a second of the finish, where the wake-up
takes milliseconds); what it saves per request is a figure for a script in bench/, not a timed test.
"""

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from llmops.errors import NotFound
from prompts.tests.factories import prompt_with_version
from providers.tests.openai_server import slow
from runs import notify, selectors, services
from runs.models import Run
from runs.tests.factories import RunFactory
from runs.tests.faults import Stack, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

PROMPT = 0.5  # seconds: "at once", generously
NO_POLL = 30.0  # a safety poll far beyond every wait below


@pytest.fixture(autouse=True)
def _own_listener() -> Iterator[None]:
    """Each test starts this process's listener (for the REDIS_URL it sets) and stops it."""
    notify.stop_listener()
    yield
    notify.stop_listener()


@pytest.fixture
def greet(alice, provider_factory):
    provider_factory(name="testllm", timeout=10.0)
    prompt, _ = prompt_with_version(alice, model="testllm/test-model")
    return prompt


@pytest.fixture
def redis_stack() -> Iterator[Stack]:
    """A Redis server of the test's own, so it can be killed and restarted."""
    stack = Stack()
    try:
        stack.start_redis()
        yield stack
    finally:
        stack.close()


class Waiter(threading.Thread):
    """`run_wait` in a thread of its own, as a request of another gunicorn thread would."""

    def __init__(self, run: Run, seconds: float) -> None:
        super().__init__(daemon=True)
        self.project, self.run_id, self.seconds = run.project, run.pk, seconds
        self.result: Run | None = None
        self.error: BaseException | None = None
        self.returned_at = 0.0
        self.start()

    def run(self) -> None:
        try:
            self.result = selectors.run_wait(project=self.project, run_id=self.run_id, seconds=self.seconds)
        except BaseException as exc:  # reported by finish()
            self.error = exc
        finally:
            self.returned_at = time.monotonic()
            connection.close()

    def finish(self, timeout: float = 30) -> Run:
        self.join(timeout)
        assert not self.is_alive(), "the waiter hangs"
        assert self.error is None, self.error
        assert self.result is not None
        return self.result


def _queued_run(owner: Any) -> Run:
    return RunFactory(owner=owner, status=Run.Status.QUEUED, output="", prompt_tokens=0, total_tokens=0)


def _finish_unannounced(run: Run) -> float:
    """Finishes the run behind runs.notify's back, as another process would; returns when (monotonic)."""
    Run.objects.filter(pk=run.pk).update(status=Run.Status.SUCCEEDED, finished_at=timezone.now())
    return time.monotonic()


def _waiting(count: int) -> None:
    wait_until(lambda: notify.waiting() >= count, timeout=10, what=f"{count} waiters registered", interval=0.01)


def _run_reads(queries: CaptureQueriesContext) -> int:
    return sum(1 for query in queries.captured_queries if 'FROM "runs_run"' in query["sql"])


def test_wait_answers_when_the_worker_finishes_the_run(alice_client, greet, openai_server, worker, settings):
    """The issue's finding: a waiting client paid up to a poll interval on top of the provider's latency."""
    settings.RUN_WAIT_POLL_S = NO_POLL
    openai_server.enqueue(slow(0.5, "Hello Ada."))

    response = alice_client.post(
        "/api/v1/runs?wait=20", {"prompt": "greet", "variables": {"name": "Ada"}}, format="json"
    )
    returned_at = time.time()

    assert response.status_code == 200, response.json()
    assert response.json()["output"] == "Hello Ada."
    finished_at = Run.objects.get(pk=response.json()["id"]).finished_at
    assert finished_at is not None
    assert returned_at - finished_at.timestamp() < PROMPT
    assert notify.waiting() == 0


def test_a_cancel_wakes_its_waiter_which_reads_the_run_only_when_woken(alice, settings):
    """run_finish notifies (a cancel is one of its callers); no read between the waiter's first and the wake-up's."""
    settings.RUN_WAIT_POLL_S = NO_POLL
    run = _queued_run(alice)
    canceled_at: list[float] = []

    def cancel() -> None:
        time.sleep(1.0)  # ten polls of the old 100 ms loop
        services.run_cancel(run=run)
        canceled_at.append(time.monotonic())
        connection.close()

    canceler = threading.Thread(target=cancel, daemon=True)
    canceler.start()
    with CaptureQueriesContext(connection) as queries:
        result = selectors.run_wait(project=alice.personal_project, run_id=run.pk, seconds=20)
    returned_at = time.monotonic()
    canceler.join(10)

    assert result.status == Run.Status.CANCELED
    assert returned_at - canceled_at[0] < PROMPT
    # The first read, the wake-up's, and with Redis at most one more when the listener subscribes.
    assert _run_reads(queries) <= 3, [query["sql"] for query in queries.captured_queries]


def test_a_lost_notification_delays_the_answer_by_the_safety_poll_only(alice, settings):
    settings.RUN_WAIT_POLL_S = 0.2
    run = _queued_run(alice)
    waiter = Waiter(run, seconds=20)
    _waiting(1)

    finished_at = _finish_unannounced(run)

    assert waiter.finish().status == Run.Status.SUCCEEDED
    assert waiter.returned_at - finished_at < 0.2 + 2  # the next poll, not the 20 s deadline


def test_a_run_that_does_not_finish_is_answered_at_the_deadline_not_the_next_poll(alice, settings):
    settings.RUN_WAIT_POLL_S = NO_POLL
    run = _queued_run(alice)

    started = time.monotonic()
    result = selectors.run_wait(project=alice.personal_project, run_id=run.pk, seconds=0.5)

    assert result.status == Run.Status.QUEUED
    assert 0.5 <= time.monotonic() - started < 0.5 + 2


def test_many_waiters_in_threads_are_all_woken_and_leave_nothing_registered(alice, bob, settings):
    settings.RUN_WAIT_POLL_S = NO_POLL
    runs = [_queued_run(alice) for _ in range(5)]
    waiters = [Waiter(run, seconds=20) for run in runs for _ in range(4)]  # several waiters per run
    _waiting(len(waiters))
    for run in runs:
        services.run_cancel(run=run)
    canceled_at = time.monotonic()

    assert [waiter.finish().status for waiter in waiters] == [Run.Status.CANCELED] * len(waiters)
    assert max(waiter.returned_at for waiter in waiters) - canceled_at < PROMPT

    # Waits that end every other way unregister too: finished at once, timed out, not found.
    finished = RunFactory(owner=alice)
    for _ in range(50):
        selectors.run_wait(project=alice.personal_project, run_id=finished.pk, seconds=5)
        selectors.run_wait(project=alice.personal_project, run_id=runs[0].pk, seconds=0.001)
        with pytest.raises(NotFound):
            selectors.run_wait(project=bob.personal_project, run_id=finished.pk, seconds=5)
        with pytest.raises(NotFound):
            selectors.run_wait(project=alice.personal_project, run_id=uuid.uuid4(), seconds=5)
    assert notify.waiting() == 0


def test_redis_unreachable_fails_neither_the_finish_nor_the_wait(alice, settings, closed_port, caplog):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    settings.RUN_WAIT_POLL_S = 0.2
    canceled, lost = _queued_run(alice), _queued_run(alice)
    waiter = Waiter(lost, seconds=20)
    _waiting(1)

    with caplog.at_level(logging.WARNING, logger="runs.notify"):
        canceled = services.run_cancel(run=canceled)  # publishes after commit: logged, not raised
        finished_at = _finish_unannounced(lost)
        result = waiter.finish()

    assert canceled.status == Run.Status.CANCELED
    assert result.status == Run.Status.SUCCEEDED
    assert waiter.returned_at - finished_at < 0.2 + 2
    assert not notify.listening()
    assert "run finished but not announced" in caplog.text
    assert notify.waiting() == 0


@pytest.mark.slow
def test_with_redis_a_publish_from_another_process_wakes_the_waiter_across_a_restart(alice, settings, redis_stack):
    settings.REDIS_URL = redis_stack.env["REDIS_URL"]
    settings.RUN_WAIT_POLL_S = NO_POLL
    other_process = redis.Redis.from_url(settings.REDIS_URL)

    def woken_by_a_publish() -> None:
        run = _queued_run(alice)
        waiter = Waiter(run, seconds=20)
        _waiting(1)
        wait_until(notify.listening, timeout=15, what="listener subscribed", interval=0.05)
        finished_at = _finish_unannounced(run)
        other_process.publish(notify.CHANNEL, str(run.pk))
        assert waiter.finish().status == Run.Status.SUCCEEDED
        assert waiter.returned_at - finished_at < PROMPT

    woken_by_a_publish()

    assert redis_stack.redis is not None
    redis_stack.redis.kill()
    wait_until(lambda: not notify.listening(), timeout=10, what="listener noticed Redis gone")
    # Down: finishing still works (the publish is logged), and a wait falls back to its safety poll.
    settings.RUN_WAIT_POLL_S = 0.2
    with transaction.atomic():
        notify.run_finished_on_commit(_queued_run(alice).pk)
    run = _queued_run(alice)
    waiter = Waiter(run, seconds=20)
    _waiting(1)
    finished_at = _finish_unannounced(run)
    assert waiter.finish().status == Run.Status.SUCCEEDED
    assert waiter.returned_at - finished_at < 0.2 + 2

    redis_stack.start_redis()  # back on the same port, empty: the listener reconnects by itself
    settings.RUN_WAIT_POLL_S = NO_POLL
    woken_by_a_publish()
    assert notify.waiting() == 0


@pytest.mark.slow
def test_with_its_redis_down_a_wait_request_still_succeeds(
    alice_client, greet, openai_server, worker, settings, redis_stack
):
    """The listener's Redis gone: the request is answered by the safety poll (or in-process wake), never fails."""
    settings.REDIS_URL = redis_stack.env["REDIS_URL"]
    assert redis_stack.redis is not None
    redis_stack.redis.kill()
    settings.RUN_WAIT_POLL_S = 0.3
    openai_server.enqueue(slow(0.3, "Hello Ada."))

    started = time.monotonic()
    response = alice_client.post(
        "/api/v1/runs?wait=20", {"prompt": "greet", "variables": {"name": "Ada"}}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "succeeded"
    assert time.monotonic() - started < 10
