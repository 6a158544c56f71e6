"""The execute_run actor on a real Dramatiq worker against the real HTTP test provider: success,
retries (429 with Retry-After, 5xx, timeouts), no retry on 4xx, idempotent redelivery (no double
charge), cancel before execution, estimated tokens, unknown prices, recovery."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from billing.models import CostLog, ModelPrice
from prompts.tests.factories import prompt_with_version
from providers.tests.openai_server import answer, error, rate_limited, server_error, slow
from runs import services
from runs.models import Run
from runs.tasks import execute_run
from runs.tests.worker import drain, wait_for_run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def provider(provider_factory):
    return provider_factory(name="testllm", timeout=1.0)


@pytest.fixture
def version(alice, provider):
    _, version = prompt_with_version(
        alice,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Greet {{ name }}."},
        ],
        template=None,
        model="testllm/test-model",
    )
    return version


def _bare_run(owner, version, **fields):
    """A run row written directly, as if its message had been lost or its worker had died."""
    values = {"rendered_input": [{"role": "user", "content": "x"}], "provider": "testllm", "model": "test-model"}
    return Run.objects.create(project=owner.personal_project, prompt_version=version, **{**values, **fields})


def _create(alice, version, **fields):
    run, created = services.run_create(
        project=alice.personal_project,
        created_by=alice,
        api_key=None,
        prompt=str(version.prompt_id),
        version=version.number,
        variables={"name": "Ada"},
        **fields,
    )
    assert created
    return run


def test_success_records_everything_and_charges_once(alice, version, openai_server, worker):
    ModelPrice.objects.create(
        provider="",
        model="test-*",
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
        effective_from="2020-01-01",
    )
    openai_server.enqueue(answer("Hi Ada."))

    run = wait_for_run(_create(alice, version).pk)

    assert run.status == Run.Status.SUCCEEDED
    assert run.output == "Hi Ada."
    assert run.finish_reason == "stop"
    assert run.rendered_input == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Greet Ada."},
    ]
    assert (run.prompt_tokens, run.completion_tokens, run.total_tokens) == (5, 2, 7)
    assert run.tokens_estimated is False
    assert run.attempts == 1
    assert run.latency_ms is not None and run.started_at and run.finished_at
    sent = openai_server.chat_requests()
    assert len(sent) == 1
    assert sent[0].body["messages"] == run.rendered_input
    assert sent[0].body["max_tokens"] == 32
    cost = CostLog.objects.get(run=run)
    assert cost.cost_known is True
    assert cost.total_cost == (Decimal(5) * 3 + Decimal(2) * 15) / Decimal(1_000_000)
    assert (cost.created_by, cost.prompt_tokens, cost.completion_tokens) == (alice, 5, 2)
    assert cost.prompt_version_id == version.pk  # spend per prompt reads no runs


def test_redelivered_messages_call_the_provider_once_and_charge_once(alice, version, openai_server, worker):
    openai_server.enqueue(slow(0.3, "Only once."))
    run = _create(alice, version)
    # Two more deliveries of the same message while the first is in flight, and one after it finished.
    execute_run.send(str(run.pk))
    execute_run.send(str(run.pk))
    run = wait_for_run(run.pk)
    execute_run.send(str(run.pk))
    drain()

    assert len(openai_server.chat_requests()) == 1
    assert CostLog.objects.filter(run=run).count() == 1
    run.refresh_from_db()
    assert (run.status, run.attempts, run.output) == (Run.Status.SUCCEEDED, 1, "Only once.")


def test_429_is_retried_after_retry_after(alice, version, openai_server, worker):
    openai_server.enqueue(rate_limited(retry_after="1"), answer("Second time lucky."))

    started = timezone.now()
    run = wait_for_run(_create(alice, version).pk)

    assert run.status == Run.Status.SUCCEEDED
    assert run.attempts == 2
    assert run.output == "Second time lucky."
    assert len(openai_server.chat_requests()) == 2
    assert run.finished_at - started >= timedelta(seconds=1)  # honoured Retry-After: 1
    assert CostLog.objects.filter(run=run).count() == 1


def test_5xx_and_timeouts_are_retried_then_fail_with_the_last_error(alice, version, openai_server, worker):
    # RUN_MAX_ATTEMPTS is 3 in tests (pyproject), also for a worker subprocess.
    openai_server.enqueue(server_error(503), slow(3), server_error(500))

    run = wait_for_run(_create(alice, version).pk)

    assert run.status == Run.Status.FAILED
    assert run.attempts == 3
    assert run.error_code == "server_error"
    assert run.finished_at is not None
    assert len(openai_server.chat_requests()) == 3
    assert not CostLog.objects.filter(run=run).exists()


def test_other_4xx_fail_at_once(alice, version, openai_server, worker):
    openai_server.enqueue(error(400, '{"error": {"message": "max_tokens is too large"}}'))

    run = wait_for_run(_create(alice, version).pk)

    assert run.status == Run.Status.FAILED
    assert run.attempts == 1
    assert run.error_code == "bad_request"
    assert "max_tokens is too large" in run.error_message
    assert len(openai_server.chat_requests()) == 1


def test_a_canceled_queued_run_never_executes(alice, version, openai_server, worker):
    # The message is only sent when the creating transaction commits, so canceling inside it
    # guarantees the worker sees a canceled run.
    with transaction.atomic():
        run = _create(alice, version)
        services.run_cancel(run=run)
    execute_run.send(str(run.pk))  # and a stray redelivery
    drain()

    run.refresh_from_db()
    assert run.status == Run.Status.CANCELED
    assert run.attempts == 0
    assert openai_server.chat_requests() == []


def test_execute_of_a_canceled_run_is_a_no_op(alice, version, openai_server):
    run = _bare_run(alice, version, status=Run.Status.CANCELED)

    services.run_execute(run_id=str(run.pk))

    run.refresh_from_db()
    assert run.status == Run.Status.CANCELED
    assert run.attempts == 0
    assert openai_server.chat_requests() == []


def test_missing_usage_is_estimated_and_flagged(alice, version, openai_server, worker):
    openai_server.enqueue(answer("A reply without usage numbers.", usage=False))

    run = wait_for_run(_create(alice, version).pk)

    assert run.status == Run.Status.SUCCEEDED
    assert run.tokens_estimated is True
    assert run.prompt_tokens and run.prompt_tokens > 0
    assert run.completion_tokens and run.completion_tokens > 0
    assert CostLog.objects.get(run=run).tokens_estimated is True


def test_unknown_price_records_cost_unknown_not_zero(alice, version, openai_server, worker):
    run = wait_for_run(_create(alice, version).pk)

    cost = CostLog.objects.get(run=run)
    assert cost.cost_known is False
    assert cost.total_cost is None


def test_recovery_resends_lost_messages_and_requeues_runs_whose_worker_died(alice, version, openai_server, worker):
    old = timezone.now() - timedelta(hours=1)
    lost = _bare_run(alice, version, enqueued_at=old)  # the broker took its message, then lost it
    Run.objects.filter(pk=lost.pk).update(updated_at=old)
    # Its worker died mid-run an hour ago: the lease lapsed long since.
    dead = _bare_run(alice, version, status=Run.Status.RUNNING, started_at=old, attempts=1, lease_expires_at=old)

    counts = services.runs_recover()

    assert (counts["resent"], counts["requeued"], counts["failed"]) == (1, 1, 0)
    assert wait_for_run(lost.pk).status == Run.Status.SUCCEEDED
    dead = wait_for_run(dead.pk)
    assert (dead.status, dead.attempts, dead.error_code) == (Run.Status.SUCCEEDED, 2, "")
    assert CostLog.objects.filter(run__in=[lost, dead]).count() == 2
