"""Runs survive lost messages and lost workers, at the service level on a real worker: the outbox
(a run the broker never got is sent by recovery), leases (a run whose worker died is taken over by
a redelivery or queued again by recovery, and charged once), the one finish function (recovery's
failures emit run.failed and release holds), the hand-back at shutdown, and the recovery loop."""

import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
import redis.exceptions
from django.utils import timezone

from billing.models import BudgetReservation, CostLog
from billing.tests.factories import BudgetFactory
from prompts.tests.factories import prompt_with_version
from providers.tests.openai_server import slow
from runs import leases, recovery, services
from runs.models import Run
from runs.tasks import execute_run
from runs.tests.worker import drain, wait_for_run
from webhooks.models import WebhookDelivery, WebhookEvent
from webhooks.services import webhook_endpoint_create

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def version(alice, provider_factory):
    provider_factory(name="testllm", timeout=5.0)
    return prompt_with_version(alice, model="testllm/test-model")[1]


def _create(alice, version):
    run, _ = services.run_create(
        project=alice.personal_project,
        created_by=alice,
        api_key=None,
        prompt=str(version.prompt_id),
        variables={"name": "Ada"},
    )
    return run


def _broker_down(monkeypatch):
    def refuse(*args, **kwargs):
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(execute_run, "send_with_options", refuse)


def _lapsed_run(alice, version, *, attempts):
    """A run whose worker died mid-attempt a minute ago: running, lease lapsed."""
    old = timezone.now() - timedelta(minutes=1)
    return Run.objects.create(
        project=alice.personal_project,
        prompt_version=version,
        rendered_input=[{"role": "user", "content": "Say hello to Ada."}],
        provider="testllm",
        model="test-model",
        params={"max_tokens": 32},
        status=Run.Status.RUNNING,
        attempts=attempts,
        started_at=old,
        lease_expires_at=old,
    )


def test_a_run_the_broker_refused_is_committed_unsent_and_sent_by_recovery(
    alice_client, version, monkeypatch, worker, settings
):
    settings.RUN_RELAY_AFTER_S = 0
    _broker_down(monkeypatch)

    # The broker fails when the commit hook sends: the client still gets its run, not a 500.
    response = alice_client.post("/api/v1/runs", {"prompt": "greet", "variables": {"name": "Ada"}}, format="json")

    assert response.status_code == 202, response.content
    run = Run.objects.get(pk=response.json()["id"])
    assert (run.status, run.enqueued_at) == (Run.Status.QUEUED, None)
    monkeypatch.undo()  # the broker is back

    assert services.runs_recover()["sent"] == 1
    run = wait_for_run(run.pk)
    assert run.status == Run.Status.SUCCEEDED
    assert services.runs_recover()["sent"] == 0  # sent once, not on every pass


def test_a_run_the_broker_took_is_not_sent_again(alice, version, worker, settings):
    settings.RUN_RELAY_AFTER_S = 0
    run = wait_for_run(_create(alice, version).pk)

    assert run.status == Run.Status.SUCCEEDED
    assert services.runs_recover() == {"sent": 0, "resent": 0, "requeued": 0, "failed": 0}


def test_a_redelivery_takes_over_a_run_whose_lease_lapsed_and_charges_once(alice, version, openai_server, worker):
    dead = _lapsed_run(alice, version, attempts=1)

    execute_run.send(str(dead.pk))  # Dramatiq redelivers the dead worker's message
    run = wait_for_run(dead.pk)

    assert (run.status, run.attempts) == (Run.Status.SUCCEEDED, 2)
    assert CostLog.objects.filter(run=run).count() == 1
    assert len(openai_server.chat_requests()) == 1


def test_a_redelivery_leaves_a_run_alone_while_its_worker_renews_the_lease(alice, version, openai_server, worker):
    openai_server.enqueue(slow(1.5, "Only once."))
    run = _create(alice, version)
    wait_for_run(run.pk, until=(Run.Status.RUNNING,))

    execute_run.send(str(run.pk))
    run = wait_for_run(run.pk)
    drain()

    assert (run.status, run.attempts, run.output) == (Run.Status.SUCCEEDED, 1, "Only once.")
    assert len(openai_server.chat_requests()) == 1


def test_the_heartbeat_renews_leases_of_held_runs_only(alice, version, settings):
    held = _lapsed_run(alice, version, attempts=1)
    taken_over = _lapsed_run(alice, version, attempts=2)
    with leases.held(held.pk, 1), leases.held(taken_over.pk, 1):  # attempt 1 of a run now on attempt 2
        assert leases.renew() == 1
    held.refresh_from_db()
    taken_over.refresh_from_db()
    assert held.lease_expires_at > timezone.now() + timedelta(seconds=settings.RUN_LEASE_S - 5)
    assert taken_over.lease_expires_at < timezone.now()


def test_a_stale_attempt_cannot_finish_a_run_another_worker_took_over(alice, version):
    run = _lapsed_run(alice, version, attempts=2)
    result = services.RunResult("late", "stop", 1, 1, False, 10)

    stale = services.run_finish(
        run=run, status=Run.Status.SUCCEEDED, expected=services.running_attempt(1), result=result
    )

    assert stale is False
    assert CostLog.objects.filter(run=run).count() == 0
    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING


def test_recovery_queues_again_a_run_whose_worker_died(alice, version, openai_server, worker):
    dead = _lapsed_run(alice, version, attempts=1)

    assert services.runs_recover()["requeued"] == 1
    run = wait_for_run(dead.pk)

    assert (run.status, run.attempts, run.error_code) == (Run.Status.SUCCEEDED, 2, "")
    assert CostLog.objects.filter(run=run).count() == 1


def test_recovery_fails_a_run_out_of_attempts_through_the_one_finish(alice, version, worker, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    webhook_endpoint_create(
        project=alice.personal_project,
        created_by=alice,
        url="http://127.0.0.1:9/hook",
        events=[WebhookEvent.RUN_FAILED],
    )
    budget = BudgetFactory(owner=alice, amount=Decimal("10"))
    dead = _lapsed_run(alice, version, attempts=settings.RUN_MAX_ATTEMPTS)
    BudgetReservation.objects.create(budget=budget, run=dead, amount=Decimal("0.5"))

    assert services.runs_recover()["failed"] == 1

    dead.refresh_from_db()
    assert (dead.status, dead.error_code) == (Run.Status.FAILED, services.WORKER_LOST)
    assert BudgetReservation.objects.get(run=dead).status == "released"
    # run.failed is emitted like any other failure (it was not, before run_finish).
    delivery = WebhookDelivery.objects.get(event=WebhookEvent.RUN_FAILED, payload__id=str(dead.pk))
    # The endpoint refuses connections: once the worker has tried it, a retry is scheduled. The suite's
    # retry schedule (pyproject.toml) is short, so the worker fixture's teardown drains it in time; with
    # the production default (30 s) the teardown's drain timed out (a CI failure that hung on this race).
    deadline = time.monotonic() + 10
    while not WebhookDelivery.objects.filter(pk=delivery.pk, attempts__gte=1).exists():
        assert time.monotonic() < deadline, "the worker never attempted the delivery"
        time.sleep(0.05)


def test_recovery_resends_a_message_the_broker_lost(alice, version, worker):
    # The broker took its message an hour ago and lost it (restarted empty): nobody ever consumed it.
    lost = _lapsed_run(alice, version, attempts=0)
    Run.objects.filter(pk=lost.pk).update(
        status=Run.Status.QUEUED, lease_expires_at=None, enqueued_at=timezone.now() - timedelta(hours=1)
    )

    assert services.runs_recover()["resent"] == 1
    assert wait_for_run(lost.pk).status == Run.Status.SUCCEEDED


def test_a_stopping_worker_hands_its_runs_back_at_once(alice, version, worker):
    run = _lapsed_run(alice, version, attempts=1)
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() + timedelta(minutes=5))  # alive

    assert services.runs_hand_back(held={run.pk: 1, uuid.uuid4(): 1}) == 1
    run = wait_for_run(run.pk)

    assert (run.status, run.attempts) == (Run.Status.SUCCEEDED, 2)


def test_the_recovery_loop_runs_passes_on_its_own(alice, version, worker, settings, monkeypatch):
    settings.RUN_RELAY_AFTER_S = 0
    _broker_down(monkeypatch)
    run = _create(alice, version)
    monkeypatch.undo()

    loop = recovery.RecoveryLoop(interval=0.2).start()
    try:
        assert wait_for_run(run.pk, timeout=20).status == Run.Status.SUCCEEDED
    finally:
        loop.stop()


def test_an_inline_run_whose_process_died_is_failed_not_queued_for_nobody(alice, version, openai_server):
    """A gateway call executes in its request: when the web process dies mid-call, no client waits for
    another attempt, so recovery fails the run (and releases its hold) instead of queueing it."""
    budget = BudgetFactory(owner=alice, amount=Decimal("10"))
    dead = _lapsed_run(alice, version, attempts=1)
    Run.objects.filter(pk=dead.pk).update(execution=Run.Execution.INLINE)
    BudgetReservation.objects.create(budget=budget, run=dead, amount=Decimal("0.5"))

    counts = services.runs_recover()

    dead.refresh_from_db()
    assert (counts["requeued"], counts["failed"]) == (0, 1)
    assert (dead.status, dead.error_code) == (Run.Status.FAILED, services.WORKER_LOST)
    assert "not retried" in dead.error_message
    assert BudgetReservation.objects.get(run=dead).status == "released"
    assert not openai_server.chat_requests()
