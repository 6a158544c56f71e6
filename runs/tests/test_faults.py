"""Guarantees under faults, against real processes: gunicorn, `rundramatiq` workers and a Redis
server of the test's own, on the test database, with the real HTTP test provider.

- A worker killed (SIGKILL) mid-run: its runs are executed again within seconds of their lease
  lapsing, not failed after the time limit, and each is charged exactly once.
- A worker stopped (SIGTERM, a deploy): its in-flight runs finish, or are handed back at once when
  the shutdown timeout is too short for them.
- Redis killed and restarted empty: while it is down the API answers 503 `broker_unavailable` with
  Retry-After and writes nothing; the messages it lost are sent again by the workers' recovery loop,
  which lives in the workers and not in the broker.
"""

import json
import time

import pytest

from accounts import services as account_services
from billing.models import CostLog
from prompts.tests.factories import prompt_with_version
from providers.tests.openai_server import slow
from runs.models import Batch, Run
from runs.tests.faults import Stack, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stack():
    stack = Stack()
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
def api_key(alice, provider_factory):
    provider_factory(name="testllm", timeout=30.0)
    prompt_with_version(alice, model="testllm/test-model")
    return account_services.api_key_create(project=alice.personal_project, created_by=alice, name="faults")[1]


def _post_run(stack: Stack, api_key: str) -> tuple[int, dict, dict]:
    body = json.dumps({"prompt": "greet", "variables": {"name": "Ada"}}).encode()
    status, headers, raw = stack.request(
        "POST", "/api/v1/runs", body, Authorization=f"Bearer {api_key}", **{"Content-Type": "application/json"}
    )
    return status, headers, json.loads(raw or b"{}")


def _create_runs(stack: Stack, api_key: str, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        status, _, body = _post_run(stack, api_key)
        assert status == 202, body
        ids.append(body["id"])
    return ids


def _statuses(ids: list[str]) -> dict[str, str]:
    return dict(Run.objects.filter(pk__in=ids).values_list("pk", "status"))


def _in_flight(ids: list[str]) -> list[str]:
    """Waits until some of the runs are running, and returns those."""
    return wait_until(
        lambda: [pk for pk, s in _statuses(ids).items() if s == Run.Status.RUNNING],
        timeout=30,
        what="runs in flight",
        interval=0.05,
    )


def _all_finished(ids: list[str]) -> bool:
    return Run.objects.filter(pk__in=ids, status__in=Run.FINISHED).count() == len(ids)


def _assert_all_succeeded_once(ids: list[str]) -> None:
    runs = list(Run.objects.filter(pk__in=ids))
    assert [r.status for r in runs] == [Run.Status.SUCCEEDED] * len(ids), [(r.status, r.error_code) for r in runs]
    assert CostLog.objects.filter(run_id__in=ids).count() == len(ids)  # unique per run: once each


def test_runs_of_a_killed_worker_are_executed_again_promptly_and_charged_once(stack, api_key, openai_server):
    openai_server.set_default(slow(2.0, "Hello Ada."))
    stack.start_redis()
    stack.start_web()
    first = stack.start_worker(threads=4)
    ids = _create_runs(stack, api_key, 8)
    in_flight = _in_flight(ids)

    first.kill()
    killed_at = time.monotonic()
    stack.start_worker(threads=4)
    wait_until(lambda: _all_finished(ids), timeout=90, what=f"all finished; worker log:\n{stack.workers[-1].log()}")
    took = time.monotonic() - killed_at

    _assert_all_succeeded_once(ids)
    # The killed attempts count: each run in flight at the kill ran again, as attempt 2.
    assert set(Run.objects.filter(pk__in=in_flight).values_list("attempts", flat=True)) == {2}
    # Within seconds of the lease lapsing (3 s here), not after the time limit (600 s).
    assert took < 60, took


def test_a_stopped_worker_lets_in_flight_runs_finish(stack, api_key, openai_server):
    openai_server.set_default(slow(2.0, "Hello Ada."))
    stack.start_redis()
    stack.start_web()
    worker = stack.start_worker(threads=2)
    ids = _create_runs(stack, api_key, 4)
    in_flight = _in_flight(ids)

    assert worker.terminate(timeout=60) == 0, worker.log()

    # The runs it was executing finished before it exited; none was left running.
    assert Run.objects.filter(pk__in=ids, status=Run.Status.RUNNING).count() == 0
    assert set(Run.objects.filter(pk__in=in_flight).values_list("status", "attempts")) == {(Run.Status.SUCCEEDED, 1)}
    stack.start_worker(threads=2)
    wait_until(lambda: _all_finished(ids), timeout=60, what="the rest finished by the next worker")
    _assert_all_succeeded_once(ids)


def test_a_worker_stopped_with_too_short_a_grace_hands_its_runs_back(stack, api_key, openai_server):
    openai_server.set_default(slow(4.0, "Hello Ada."))
    stack.start_redis()
    stack.start_web()
    worker = stack.start_worker(threads=2, shutdown_timeout_ms=300)
    ids = _create_runs(stack, api_key, 2)
    wait_until(lambda: list(_statuses(ids).values()) == [Run.Status.RUNNING] * 2, timeout=30, what="both running")

    worker.terminate(timeout=60)

    # Handed back at once: queued again for another worker, not left to a lapsing lease.
    assert set(_statuses(ids).values()) == {Run.Status.QUEUED}, worker.log()
    stack.start_worker(threads=2)
    wait_until(lambda: _all_finished(ids), timeout=60, what="finished by the next worker")
    _assert_all_succeeded_once(ids)
    assert set(Run.objects.filter(pk__in=ids).values_list("attempts", flat=True)) == {2}


def test_redis_restarting_empty_refuses_cleanly_while_down_and_loses_no_run(stack, api_key, openai_server, alice):
    openai_server.set_default(slow(0.3, "Hello Ada."))
    stack.start_redis()
    stack.start_web()
    stack.start_worker(threads=1)
    ids = _create_runs(stack, api_key, 10)  # one at a time: most wait in Redis
    wait_until(lambda: Run.Status.RUNNING in _statuses(ids).values(), timeout=30, what="a run in flight")

    assert stack.redis is not None
    stack.redis.kill()  # the messages waiting in Redis, and anything else it held, are gone
    runs_before, batches_before = Run.objects.count(), Batch.objects.count()
    status, headers, body = _post_run(stack, api_key)
    batch = json.dumps({"prompt": "greet", "items": [{"variables": {"name": "Ada"}}]}).encode()
    batch_status, batch_headers, batch_body = stack.request(
        "POST", "/api/v1/batches", batch, Authorization=f"Bearer {api_key}", **{"Content-Type": "application/json"}
    )

    assert (status, body["error"]["code"]) == (503, "broker_unavailable"), body
    assert int(headers["Retry-After"]) > 0
    assert (batch_status, json.loads(batch_body)["error"]["code"]) == (503, "broker_unavailable")
    assert int(batch_headers["Retry-After"]) > 0
    assert (Run.objects.count(), Batch.objects.count()) == (runs_before, batches_before)  # nothing half-written

    stack.start_redis()  # back, empty
    wait_until(lambda: _all_finished(ids), timeout=90, what=f"all finished; worker log:\n{stack.workers[-1].log()}")
    _assert_all_succeeded_once(ids)
    assert _post_run(stack, api_key)[0] == 202  # and the API takes runs again
