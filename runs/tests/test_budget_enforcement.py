"""Budgets and tokens per minute as run creation and execution enforce them: a run reserves its
maximum cost when created (402 when it does not fit, with nothing left behind), the real worker
settles the hold with the real cost or releases it when the run fails or is canceled, recovery releases
it too, and an API key over its tokens for the minute gets 429 with Retry-After. On PostgreSQL, 50
concurrent creations against a budget for 10 admit exactly 10."""

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from accounts import ratelimit
from accounts.models import APIKey
from billing import selectors as billing_selectors
from billing import services as billing_services
from billing.models import Budget, BudgetReservation, CostLog, ModelPrice
from billing.tests.factories import BudgetFactory
from llmops.tests.helpers import assert_error
from prompts.tests.factories import prompt_with_version
from providers import tokens
from providers.tests.openai_server import answer, error
from runs import services
from runs.models import Run
from runs.tests.worker import drain, wait_for_run

requires_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks and real concurrency need PostgreSQL"
)

MESSAGES = [{"role": "user", "content": "Say hello to Ada."}]
INPUT_PER_MTOK, OUTPUT_PER_MTOK = Decimal("1000"), Decimal("2000")


@pytest.fixture
def provider(provider_factory):
    return provider_factory(name="testllm", timeout=1.0)


@pytest.fixture
def version(alice, provider):
    # Renders to MESSAGES; max_tokens 32 bounds the completion.
    return prompt_with_version(alice, model="testllm/test-model")[1]


@pytest.fixture
def price(db):
    return ModelPrice.objects.create(
        provider="testllm",
        model="test-model",
        input_per_mtok=INPUT_PER_MTOK,
        output_per_mtok=OUTPUT_PER_MTOK,
        effective_from="2020-01-01",
    )


def _maximum(provider, max_tokens=32):
    """The most a run of MESSAGES may cost: prompt bound x input price + max_tokens x output price."""
    estimate = tokens.prompt_tokens_bound(provider=provider, model_id="test-model", messages=MESSAGES)
    return (estimate * INPUT_PER_MTOK + max_tokens * OUTPUT_PER_MTOK) / Decimal(1_000_000)


def _post_run(client, **body):
    return client.post("/api/v1/runs", {"prompt": "greet", "variables": {"name": "Ada"}, **body}, format="json")


def _create(owner, version, api_key=None, **fields):
    run, created = services.run_create(
        project=owner.personal_project,
        created_by=owner,
        api_key=api_key,
        prompt=str(version.prompt_id),
        version=version.number,
        variables={"name": "Ada"},
        **fields,
    )
    assert created
    return run


def _usage(budget):
    annotated = billing_selectors.budgets_with_usage(now=timezone.now()).get(pk=budget.pk)
    return annotated.spent, annotated.reserved


def _client_key(alice):
    return APIKey.objects.get(created_by=alice, name="test")  # the key alice_client authenticates with


# Reservation at creation


@pytest.mark.django_db
def test_a_run_holds_its_maximum_cost(alice_client, alice, version, provider, price):
    budget = BudgetFactory(owner=alice, amount=Decimal("1"))

    response = _post_run(alice_client)

    assert response.status_code == 202, response.content
    reservation = BudgetReservation.objects.get()
    assert str(reservation.run_id) == response.json()["id"]
    assert (reservation.budget, reservation.status) == (budget, "held")
    # The prompt's bound: "user" + "Say hello to Ada." is 21 UTF-8 bytes, + 8 for the message + 16 = 45 tokens.
    assert reservation.amount == _maximum(provider) == Decimal("0.109")  # 45 x 1000 + 32 x 2000 per million
    assert _usage(budget) == (0, Decimal("0.109"))


@pytest.mark.django_db
def test_max_tokens_of_the_request_or_the_default_bound_the_completion(alice, provider, price, settings):
    settings.BUDGET_DEFAULT_MAX_TOKENS = 1000
    BudgetFactory(owner=alice, amount=Decimal("100"))
    capped = prompt_with_version(alice, name="capped", model="testllm/test-model")[1]
    open_ended = prompt_with_version(alice, name="open", model="testllm/test-model", params={})[1]

    overridden = _create(alice, capped, params={"max_tokens": 100})
    defaulted = _create(alice, open_ended)

    assert BudgetReservation.objects.get(run=overridden).amount == _maximum(provider, max_tokens=100)
    assert BudgetReservation.objects.get(run=defaulted).amount == _maximum(provider, max_tokens=1000)


@pytest.mark.django_db
def test_a_run_over_budget_is_402_and_leaves_nothing_behind(alice_client, alice, version, price):
    budget = BudgetFactory(owner=alice, amount=Decimal("0.15"), window=Budget.Window.DAY)
    assert _post_run(alice_client).status_code == 202  # holds 0.109 of 0.15

    error_body = assert_error(_post_run(alice_client), 402, "budget_exceeded")

    assert str(budget.pk) in error_body["message"]
    assert "spent 0 USD, reserved 0.109 USD, remaining 0.041 USD" in error_body["message"]
    assert Run.objects.count() == 1
    assert BudgetReservation.objects.count() == 1
    # The seed's endpoint is guarded the same way.
    seed = alice_client.post(
        "/api/v1/run", {"prompt_version_id": str(version.pk), "variables": {"name": "Ada"}}, format="json"
    )
    assert_error(seed, 402, "budget_exceeded")
    assert Run.objects.count() == 1


@pytest.mark.django_db
def test_the_keys_budget_and_the_users_budget_both_refuse(alice_client, alice, version, price):
    key = _client_key(alice)
    key_budget = BudgetFactory(owner=alice, api_key=key, amount=Decimal("0.15"))
    user_budget = BudgetFactory(owner=alice, amount=Decimal("0.3"))

    assert _post_run(alice_client).status_code == 202
    refused = assert_error(_post_run(alice_client), 402, "budget_exceeded")
    assert f"key {key.prefix}" in refused["message"]
    # Another of alice's keys is not bound by that key's budget, but still by hers: 0.191 left, then 0.082.
    other = _create(alice, version, api_key=None)
    assert {r.budget_id for r in other.budget_reservations.all()} == {user_budget.pk}
    with pytest.raises(billing_services.BudgetRefused) as by_user:
        _create(alice, version, api_key=None)
    assert "project-wide" in by_user.value.message
    assert _usage(key_budget) == (0, Decimal("0.109"))
    assert _usage(user_budget) == (0, Decimal("0.218"))
    assert Run.objects.count() == 2


@pytest.mark.django_db
def test_an_unpriced_model_is_refused_when_a_budget_applies(alice_client, bob_client, alice, bob, provider):
    prompt_with_version(bob, model="testllm/test-model")
    BudgetFactory(owner=alice, amount=Decimal("1000"))
    prompt_with_version(alice, model="testllm/test-model")

    refused = assert_error(_post_run(alice_client), 402, "price_unknown")

    assert "testllm/test-model" in refused["message"]
    assert not Run.objects.filter(project=alice.personal_project).exists()
    # Without a budget the same run is admitted; its cost is recorded as unknown, never as 0.
    assert _post_run(bob_client).status_code == 202
    assert not BudgetReservation.objects.exists()


# Settle and release on the real worker


@pytest.mark.django_db(transaction=True)
def test_success_settles_the_hold_with_the_real_cost(alice, version, provider, price, openai_server, worker):
    budget = BudgetFactory(owner=alice, amount=Decimal("1"))
    openai_server.enqueue(answer("Hi Ada."))

    run = wait_for_run(_create(alice, version).pk)

    assert run.status == Run.Status.SUCCEEDED
    cost = CostLog.objects.get(run=run).total_cost
    assert cost == (4 * INPUT_PER_MTOK + 2 * OUTPUT_PER_MTOK) / Decimal(1_000_000)  # usage 4 + 2
    reservation = BudgetReservation.objects.get(run=run)
    assert reservation.status == "settled" and reservation.closed_at is not None
    assert _usage(budget) == (cost, 0)


@pytest.mark.django_db(transaction=True)
def test_a_failed_run_releases_its_hold_and_frees_the_budget(alice, version, provider, price, openai_server, worker):
    budget = BudgetFactory(owner=alice, amount=_maximum(provider))  # room for exactly one run
    openai_server.enqueue(error(400, '{"error": {"message": "max_tokens is too large"}}'))

    failed = wait_for_run(_create(alice, version).pk)

    assert (failed.status, failed.error_code) == (Run.Status.FAILED, "bad_request")
    assert BudgetReservation.objects.get(run=failed).status == "released"
    assert _usage(budget) == (0, 0)
    # The released room admits the next run, which succeeds and is charged.
    succeeded = wait_for_run(_create(alice, version).pk)
    assert succeeded.status == Run.Status.SUCCEEDED
    assert _usage(budget) == (CostLog.objects.get(run=succeeded).total_cost, 0)


@pytest.mark.django_db(transaction=True)
def test_a_canceled_run_releases_its_hold(alice, version, provider, price, openai_server, worker):
    budget = BudgetFactory(owner=alice, amount=Decimal("1"))
    # Canceled before its message is sent (at commit), so the worker only ever sees it canceled.
    with transaction.atomic():
        run = _create(alice, version)
        services.run_cancel(run=run)
    drain()

    run.refresh_from_db()
    assert run.status == Run.Status.CANCELED
    assert openai_server.chat_requests() == []
    assert BudgetReservation.objects.get(run=run).status == "released"
    assert _usage(budget) == (0, 0)


@pytest.mark.django_db(transaction=True)
def test_recovery_releases_the_hold_of_a_run_it_fails(alice, version, provider, price, openai_server, worker, settings):
    from datetime import timedelta

    budget = BudgetFactory(owner=alice, amount=Decimal("1"))
    with transaction.atomic():
        run = _create(alice, version)
        # Its worker "dies" mid-run in its last attempt: claimed long ago, lease lapsed, never finished.
        old = timezone.now() - timedelta(hours=1)
        Run.objects.filter(pk=run.pk).update(
            status=Run.Status.RUNNING, started_at=old, lease_expires_at=old, attempts=settings.RUN_MAX_ATTEMPTS
        )
    drain()

    counts = services.runs_recover()

    assert counts["failed"] == 1
    run.refresh_from_db()
    assert (run.status, run.error_code) == (Run.Status.FAILED, "worker_lost")
    assert BudgetReservation.objects.get(run=run).status == "released"
    assert _usage(budget) == (0, 0)


# Tokens per minute


def _not_near_the_end_of_a_minute(margin: float = 15.0) -> None:
    """Counters are per clock minute; a test that reads one back must not straddle two."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.2)


@pytest.mark.django_db(transaction=True)
def test_a_key_over_its_tokens_per_minute_gets_429_with_retry_after(
    alice_client, alice, version, openai_server, worker
):
    key = _client_key(alice)
    APIKey.objects.filter(pk=key.pk).update(tokens_per_minute=10)  # the key's override; the default is off
    openai_server.enqueue(answer("Hi Ada."), answer("Hi Ada."))  # 4 + 2 tokens each
    _not_near_the_end_of_a_minute()

    first = wait_for_run(_post_run(alice_client).json()["id"])
    second = wait_for_run(_post_run(alice_client).json()["id"])  # 6 < 10: admitted
    assert (first.total_tokens, second.total_tokens) == (6, 6)
    before = time.time()
    response = _post_run(alice_client)  # 12 >= 10

    assert_error(response, 429, "tokens_rate_limited")
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60
    assert abs(retry_after - (60 - before % 60)) <= 2  # the seconds until the minute ends
    assert Run.objects.count() == 2


@pytest.mark.django_db
def test_the_default_limit_applies_unless_the_key_overrides_it(alice_client, bob_client, alice, bob, version, settings):
    settings.RATE_LIMIT_TOKENS_PER_MINUTE = 100
    prompt_with_version(bob, model="testllm/test-model")
    alice_key, bob_key = _client_key(alice), APIKey.objects.get(created_by=bob, name="test")
    _not_near_the_end_of_a_minute(margin=5)

    ratelimit.token_usage_record(api_key=alice_key, tokens=60)
    ratelimit.token_usage_record(api_key=alice_key, tokens=40)  # add + incr: 100
    ratelimit.token_usage_record(api_key=bob_key, tokens=99)

    assert_error(_post_run(alice_client), 429, "tokens_rate_limited")
    assert _post_run(bob_client).status_code == 202  # 99 < 100
    APIKey.objects.filter(pk=alice_key.pk).update(tokens_per_minute=0)  # this key: no limit
    assert _post_run(alice_client).status_code == 202
    APIKey.objects.filter(pk=alice_key.pk).update(tokens_per_minute=1000)  # or a higher one
    assert _post_run(alice_client).status_code == 202
    settings.RATE_LIMIT_TOKENS_PER_MINUTE = 0
    APIKey.objects.filter(pk=alice_key.pk).update(tokens_per_minute=None)  # back to the default, now off
    assert _post_run(alice_client).status_code == 202


# Concurrency (PostgreSQL)


@pytest.mark.postgres
@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_creations_never_reserve_more_than_the_budget(alice, version, provider, price, monkeypatch):
    monkeypatch.setattr(services, "_enqueue", lambda run_id, delay_ms=None: None)  # no worker: holds stay held
    maximum = _maximum(provider)
    budget = BudgetFactory(owner=alice, amount=maximum * 10, window=Budget.Window.DAY)
    count = 50
    start = threading.Barrier(count)
    outcomes: list[str | None] = [None] * count

    def create(index: int) -> None:
        try:
            start.wait(timeout=30)
            _create(alice, version)
            outcomes[index] = "admitted"
        except billing_services.BudgetRefused as exc:
            outcomes[index] = exc.code
        except Exception as exc:  # a deadlock or anything else fails the test below
            outcomes[index] = repr(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not any(thread.is_alive() for thread in threads)
    assert sorted(outcomes) == ["admitted"] * 10 + ["budget_exceeded"] * 40, outcomes  # type: ignore[type-var]
    spent, reserved = _usage(budget)
    assert spent == 0
    assert reserved == maximum * 10 <= budget.amount
    assert Run.objects.count() == BudgetReservation.objects.filter(status="held").count() == 10


# A hard budget holds against text that tokenizes badly


# Each of these is far more tokens than ceil(characters / 4): one-letter words (~1 token each, plus
# the spaces), CJK and emoji (a token per character or more), dense code.
ADVERSARIAL = {
    "one-letter words": " ".join("abcdefghij"[i % 10] for i in range(200)),
    "cjk": "汉字漢字かなカナ한국어" * 20,
    "emoji": "🙂🚀👩‍💻🇫🇷" * 25,
    "code": "x[i]=(a^b)|~c;" * 30,
}


def _worst_case_usage(body, text):
    """A provider whose tokenizer gives every UTF-8 byte a token, with a ChatML template (5 tokens a
    message, 3 for the reply's opener), and that always writes max_tokens tokens."""
    messages = body.get("messages", [])
    prompt = sum(len(m["role"].encode()) + len(m["content"].encode()) + 5 for m in messages) + 3
    return prompt, body["max_tokens"]


@pytest.mark.parametrize("kind", sorted(ADVERSARIAL))
def test_spend_never_passes_a_hard_budget_whatever_the_text(alice, provider, price, openai_server, worker, kind):
    openai_server.set_usage(_worst_case_usage)
    text = ADVERSARIAL[kind]
    _, version = prompt_with_version(
        alice,
        name=f"adv-{kind[:3]}",
        template="{{ text }}",
        variables={"text": {"type": "string"}},
        model="testllm/test-model",
    )
    budget = BudgetFactory(owner=alice, amount=Decimal("5.00"))
    admitted = 0
    while admitted < 100:
        try:
            run, _ = services.run_create(
                project=alice.personal_project,
                created_by=alice,
                api_key=None,
                prompt=str(version.prompt_id),
                variables={"text": text},
            )
        except billing_services.BudgetRefused:
            break
        assert wait_for_run(run.pk).status == Run.Status.SUCCEEDED
        admitted += 1

    spent, reserved = _usage(budget)
    assert admitted >= 3  # the budget admitted real work before it refused
    assert reserved == 0
    # Every run was charged at least what the provider reported, and the sum stayed within the budget.
    assert spent == sum(c.total_cost for c in CostLog.objects.filter(project=alice.personal_project))
    assert 0 < spent <= budget.amount, f"{kind}: spent {spent} of {budget.amount}"
