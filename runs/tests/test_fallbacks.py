"""Fallback models on the worker path, on a real worker against the real HTTP test provider: a 429 moves
to the next model at once, a retryable failure after its model's attempts, a 400 never; every attempt
is logged on the run with the model it called, and the model that answered is the one charged; the
budget holds the most expensive candidate; each fallback is checked as the run's model is; recovery
counts attempts per model and ends."""

from datetime import timedelta
from decimal import Decimal

import pytest
import redis.exceptions
from django.db.models import F
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from billing.models import BudgetReservation, CostLog, ModelPrice
from billing.tests.factories import BudgetFactory
from llmops.tests.helpers import assert_error
from llmops.tests.test_schema import schema_errors
from prompts.tests.factories import prompt_with_version
from providers import tokens
from providers.tests.openai_server import answer, error, rate_limited, server_error
from runs import services
from runs.models import Run
from runs.tasks import execute_run
from runs.tests.worker import wait_for_run

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "Say hello to Ada."}]


@pytest.fixture
def provider(provider_factory, openai_server):
    openai_server.set_models(["test-model", "backup", "pricey"])
    return provider_factory(name="testllm", timeout=5.0)


@pytest.fixture
def other(provider_factory):
    """A second provider (on the same test server): a fallback may be another provider's model."""
    return provider_factory(name="other", timeout=5.0)


@pytest.fixture
def version(alice, provider):
    return prompt_with_version(alice, model="testllm/test-model")[1]  # renders to MESSAGES


def _create(alice, version, **params):
    run, created = services.run_create(
        project=alice.personal_project,
        created_by=alice,
        api_key=None,
        prompt=str(version.prompt_id),
        variables={"name": "Ada"},
        params=params,
    )
    assert created
    return run


def _sent_models(openai_server):
    return [request.body["model"] for request in openai_server.chat_requests()]


def _log(run):
    return [(e["attempt"], e["provider"], e["model"], e["error_code"]) for e in run.attempt_log]


def test_a_429_moves_to_the_fallback_at_once_and_the_model_that_answered_is_charged(
    alice, version, other, openai_server, worker
):
    ModelPrice.objects.create(
        provider="other", model="backup", input_per_mtok=1, output_per_mtok=2, effective_from="2020-01-01"
    )
    openai_server.enqueue(rate_limited(retry_after="30"), answer("From the backup."))

    created = timezone.now()
    run = wait_for_run(_create(alice, version, fallbacks=["other/backup"]).pk)

    assert (run.status, run.output, run.attempts) == (Run.Status.SUCCEEDED, "From the backup.", 2)
    assert (run.provider, run.model) == ("other", "backup")
    assert _sent_models(openai_server) == ["test-model", "backup"]
    assert run.finished_at - created < timedelta(seconds=10)  # the primary's Retry-After: 30 was not waited
    assert _log(run) == [(1, "testllm", "test-model", "rate_limited"), (2, "other", "backup", "")]
    assert "Rate limit reached" in run.attempt_log[0]["error_message"]
    assert run.error_code == ""  # succeeded: the error of the first attempt is in the log only
    cost = CostLog.objects.get(run=run)
    assert (cost.provider, cost.model, cost.cost_known) == ("other", "backup", True)
    assert "fallbacks" not in openai_server.chat_requests()[1].body  # a run parameter, never sent


def test_a_5xx_is_retried_on_its_model_then_moves_on(alice, version, openai_server, worker, settings):
    # RUN_MAX_ATTEMPTS is 3 in tests (pyproject): three attempts of the primary, then the fallback.
    openai_server.enqueue(server_error(503), server_error(500), server_error(502), answer("Backup here."))

    run = wait_for_run(_create(alice, version, fallbacks=["testllm/backup"]).pk)

    assert (run.status, run.model, run.attempts, run.output) == (Run.Status.SUCCEEDED, "backup", 4, "Backup here.")
    assert _sent_models(openai_server) == ["test-model"] * settings.RUN_MAX_ATTEMPTS + ["backup"]
    assert [code for *_, code in _log(run)] == ["server_error"] * 3 + [""]
    assert [model for _, _, model, _ in _log(run)] == ["test-model"] * 3 + ["backup"]


def test_a_400_does_not_move_on(alice, version, openai_server, worker):
    openai_server.enqueue(error(400, '{"error": {"message": "max_tokens is too large"}}'))

    run = wait_for_run(_create(alice, version, fallbacks=["testllm/backup"]).pk)

    assert (run.status, run.error_code, run.attempts, run.model) == (Run.Status.FAILED, "bad_request", 1, "test-model")
    assert _sent_models(openai_server) == ["test-model"]
    assert _log(run) == [(1, "testllm", "test-model", "bad_request")]


def test_when_every_model_failed_the_run_fails_with_the_last_error(alice, version, openai_server, worker):
    openai_server.enqueue(rate_limited(retry_after="0"), *[server_error(500)] * 3)

    run = wait_for_run(_create(alice, version, fallbacks=["testllm/backup"]).pk)

    assert (run.status, run.error_code, run.attempts, run.model) == (Run.Status.FAILED, "server_error", 4, "backup")
    assert _sent_models(openai_server) == ["test-model", "backup", "backup", "backup"]
    assert _log(run)[0] == (1, "testllm", "test-model", "rate_limited")
    assert not CostLog.objects.filter(run=run).exists()


def test_a_429_without_a_fallback_left_is_retried_as_before(alice, version, openai_server, worker):
    openai_server.enqueue(rate_limited(retry_after="0"), rate_limited(retry_after="0"), answer("Finally."))

    run = wait_for_run(_create(alice, version, fallbacks=["testllm/backup"]).pk)

    # The primary's 429 moved the run; the backup's 429 has nowhere to go, so the backup is retried.
    assert (run.status, run.model, run.attempts) == (Run.Status.SUCCEEDED, "backup", 3)
    assert _sent_models(openai_server) == ["test-model", "backup", "backup"]


def test_the_run_shows_its_attempts_through_the_api(alice, alice_client, version, openai_server, worker):
    openai_server.enqueue(rate_limited(retry_after="0"), answer("B."))
    run = wait_for_run(_create(alice, version, fallbacks=["testllm/backup"]).pk)

    body = alice_client.get(f"/api/v1/runs/{run.pk}").json()

    assert body["model"] == "backup" and body["cached"] is False
    assert [(a["attempt"], a["model"], a["error_code"]) for a in body["attempt_log"]] == [
        (1, "test-model", "rate_limited"),
        (2, "backup", ""),
    ]
    assert body["params"]["fallbacks"] == ["testllm/backup"]


# The budget holds the most expensive candidate


def _price(provider, model, input_per_mtok, output_per_mtok):
    return ModelPrice.objects.create(
        provider=provider,
        model=model,
        input_per_mtok=Decimal(input_per_mtok),
        output_per_mtok=Decimal(output_per_mtok),
        effective_from="2020-01-01",
    )


def _maximum(provider, model, input_per_mtok, output_per_mtok, max_tokens=32):
    bound = tokens.prompt_tokens_bound(provider=provider, model_id=model, messages=MESSAGES)
    return (bound * Decimal(input_per_mtok) + max_tokens * Decimal(output_per_mtok)) / Decimal(1_000_000)


def test_the_reservation_is_the_most_expensive_candidates_maximum(alice, version, provider, other):
    # Any of the three may answer, so the dearest one's maximum is held, whatever the order.
    _price("testllm", "test-model", "1", "2")
    _price("other", "pricey", "1000", "3000")
    _price("testllm", "backup", "10", "20")
    budget = BudgetFactory(owner=alice, amount=Decimal("10"))

    run = _create(alice, version, fallbacks=["testllm/backup", "other/pricey"])

    hold = BudgetReservation.objects.get(run=run, budget=budget)
    assert hold.amount == _maximum(other, "pricey", "1000", "3000")
    assert hold.amount > _maximum(provider, "test-model", "1", "2")


def test_a_fallback_that_does_not_fit_the_budget_refuses_the_run(alice_client, alice, version, provider, other):
    _price("testllm", "test-model", "1", "2")
    _price("other", "pricey", "1000", "3000")
    BudgetFactory(owner=alice, amount=Decimal("0.01"))  # fits the primary (about 0.0001) only
    assert _maximum(provider, "test-model", "1", "2") < Decimal("0.01") < _maximum(other, "pricey", "1000", "3000")

    response = alice_client.post(
        "/api/v1/runs",
        {"prompt": "greet", "variables": {"name": "Ada"}, "params": {"fallbacks": ["other/pricey"]}},
        format="json",
    )

    error_body = assert_error(response, 402, "budget_exceeded")
    assert "most expensive of its 2 models" in error_body["message"]
    assert not Run.objects.exists()


def test_a_fallback_without_a_price_refuses_the_run_when_a_budget_applies(alice_client, alice, version, other):
    _price("testllm", "test-model", "1", "2")
    BudgetFactory(owner=alice, amount=Decimal("10"))

    response = alice_client.post(
        "/api/v1/runs",
        {"prompt": "greet", "variables": {"name": "Ada"}, "params": {"fallbacks": ["other/backup"]}},
        format="json",
    )

    error_body = assert_error(response, 402, "price_unknown")
    assert "other/backup" in error_body["message"]
    assert not Run.objects.exists()


# Each fallback is checked as the run's model is


@pytest.mark.parametrize(
    ("fallbacks", "field"),
    [
        (["testllm/backup", "nosuch/model"], "params.fallbacks.1"),  # no such provider
        (["testllm/missing"], "params.fallbacks.0"),  # the provider does not list it
        (["no-slash"], "params.fallbacks.0"),  # not `<provider>/<model id>`
        (["testllm/backup"] * 4, "params.fallbacks"),  # more than 3
        ("testllm/backup", "params.fallbacks"),  # not a list
    ],
)
def test_a_bad_fallback_is_a_400_naming_it_and_nothing_is_written(alice_client, version, fallbacks, field):
    response = alice_client.post(
        "/api/v1/runs",
        {"prompt": "greet", "variables": {"name": "Ada"}, "params": {"fallbacks": fallbacks}},
        format="json",
    )

    assert_error(response, 400, fields={field})
    assert not Run.objects.exists()


def test_a_versions_bad_fallback_names_the_prompt_as_its_bad_model_would(alice, alice_client, provider):
    # A version's fallbacks are checked for shape when it is saved, for their provider when it runs.
    prompt_with_version(alice, name="shaky", model="testllm/test-model", params={"fallbacks": ["gone/model"]})

    response = alice_client.post("/api/v1/runs", {"prompt": "shaky", "variables": {"name": "A"}}, format="json")

    error_body = assert_error(response, 400, "unknown_provider", fields={"prompt"})
    assert "Fallback 0 of the version" in error_body["fields"]["prompt"][0]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"fallbacks": ["a/b"] * 4}, "params.fallbacks"),
        ({"fallbacks": ["no-slash"]}, "params.fallbacks.0"),
        ({"cache": {"ttl": 0}}, "params.cache.ttl"),
        ({"cache": {"ttl": 86_401}}, "params.cache.ttl"),
        ({"cache": {}}, "params.cache.ttl"),
        ({"cache": {"ttl": 5, "scope": "x"}}, "params.cache.scope"),
        ({"cache": 60}, "params.cache"),
    ],
)
def test_the_schema_states_the_run_parameters_rules(alice_client, version, params, field):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    body = {"prompt": "greet", "variables": {"name": "Ada"}, "params": params}
    request_schema = schema["paths"]["/api/v1/runs"]["post"]["requestBody"]["content"]["application/json"]["schema"]

    assert schema_errors(schema, request_schema, body), "the schema takes it"
    assert_error(alice_client.post("/api/v1/runs", body, format="json"), 400, fields={field})


# Recovery counts attempts per model, and ends


def _broker_down(monkeypatch):
    """Recovery's sends fail: the runs it queues again stay queued, for the test to play the worker."""

    def refuse(*args, **kwargs):
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(execute_run, "send_with_options", refuse)


def _lapsed_run(alice, version, *, attempts, model="test-model", attempt_log=()):
    old = timezone.now() - timedelta(minutes=1)
    return Run.objects.create(
        project=alice.personal_project,
        prompt_version=version,
        rendered_input=MESSAGES,
        provider="testllm",
        model=model,
        params={"max_tokens": 32, "fallbacks": ["testllm/backup"]},
        status=Run.Status.RUNNING,
        attempts=attempts,
        attempt_log=list(attempt_log),
        started_at=old,
        lease_expires_at=old,
    )


def _failed(attempt, model):
    return {
        "attempt": attempt,
        "provider": "testllm",
        "model": model,
        "error_code": "server_error",
        "error_message": "Provider 'testllm' answered HTTP 500",
        "at": timezone.now().isoformat(),
    }


def test_a_run_whose_model_lost_its_last_attempt_is_queued_on_its_fallback(alice, version, worker, openai_server):
    run = _lapsed_run(alice, version, attempts=3)  # RUN_MAX_ATTEMPTS of the primary, the last one lost

    assert services.runs_recover()["requeued"] == 1

    run = wait_for_run(run.pk)
    assert (run.status, run.model, run.attempts) == (Run.Status.SUCCEEDED, "backup", 4)
    assert _log(run) == [(3, "testllm", "test-model", "worker_lost"), (4, "testllm", "backup", "")]


def test_recovery_counts_the_attempts_of_the_current_model(alice, version, monkeypatch):
    _broker_down(monkeypatch)
    primary_failures = [_failed(n, "test-model") for n in (1, 2, 3)]
    # Attempt 4 is the backup's first: past RUN_MAX_ATTEMPTS in all, it is still queued again.
    fresh = _lapsed_run(alice, version, attempts=4, model="backup", attempt_log=primary_failures)
    # Attempt 6 is the backup's third, and no model is left: it fails.
    spent = _lapsed_run(alice, version, attempts=6, model="backup", attempt_log=primary_failures)

    counts = services.runs_recover()

    assert (counts["requeued"], counts["failed"]) == (1, 1)
    fresh.refresh_from_db()
    spent.refresh_from_db()
    assert (fresh.status, fresh.model) == (Run.Status.QUEUED, "backup")
    assert (spent.status, spent.error_code) == (Run.Status.FAILED, "worker_lost")
    assert _log(spent)[-1] == (6, "testllm", "backup", "worker_lost")


def test_recovery_ends_after_the_attempts_of_every_model(alice, version, monkeypatch, settings):
    _broker_down(monkeypatch)
    run = _lapsed_run(alice, version, attempts=1)
    for _ in range(20):  # each attempt is claimed, then its worker dies
        services.runs_recover()
        run.refresh_from_db()
        if run.status == Run.Status.FAILED:
            break
        assert run.status == Run.Status.QUEUED
        old = timezone.now() - timedelta(minutes=1)
        Run.objects.filter(pk=run.pk).update(
            status=Run.Status.RUNNING, attempts=F("attempts") + 1, started_at=old, lease_expires_at=old
        )

    assert (run.status, run.error_code) == (Run.Status.FAILED, "worker_lost")
    assert run.attempts == settings.RUN_MAX_ATTEMPTS * 2
    assert [model for _, _, model, _ in _log(run)] == ["test-model"] * 3 + ["backup"] * 3
