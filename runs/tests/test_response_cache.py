"""The response cache on the worker path (POST /api/v1/runs, batches), against the real HTTP test
provider and a real worker: an identical deterministic request with `cache` is answered at once from
the first answer, with no provider call, as a run marked `cached` that costs nothing, holds no budget
and counts towards the key's tokens per minute; anything else is not cached; answers expire."""

import time
from decimal import Decimal

import pytest

from accounts.models import APIKey
from billing.models import BudgetReservation, CostLog, ModelPrice
from billing.tests.factories import BudgetFactory
from llmops.tests.helpers import assert_error
from prompts.tests.factories import prompt_with_version
from providers.tests.openai_server import answer, rate_limited
from runs import batch_files, batch_services
from runs.models import Batch, Run
from runs.tests.test_batches import _wait_for_batch

pytestmark = pytest.mark.django_db(transaction=True)

CACHED = {"temperature": 0, "cache": {"ttl": 60}}


@pytest.fixture
def provider(provider_factory, openai_server):
    openai_server.set_models(["test-model", "backup"])
    ModelPrice.objects.create(
        provider="testllm", model="*", input_per_mtok=100, output_per_mtok=200, effective_from="2020-01-01"
    )
    return provider_factory(name="testllm", timeout=5.0)


@pytest.fixture
def version(alice, provider):
    return prompt_with_version(alice, model="testllm/test-model")[1]


def _post(client, *, name="Ada", **params):
    body = {"prompt": "greet", "variables": {"name": name}, "params": params}
    return client.post("/api/v1/runs?wait=15", body, format="json")


def _ok(response):
    assert response.status_code == 200, response.content
    return response.json()


def test_an_identical_request_is_answered_from_the_cache_at_no_cost(alice_client, version, openai_server, worker):
    openai_server.enqueue(answer("Hello, Ada."))
    first = _ok(_post(alice_client, **CACHED))

    second = _ok(_post(alice_client, **CACHED))

    assert len(openai_server.chat_requests()) == 1  # the second never reached the provider
    assert (first["status"], first["cached"]) == ("succeeded", False)
    assert (second["status"], second["cached"], second["output"]) == ("succeeded", True, "Hello, Ada.")
    assert second["id"] != first["id"]
    assert second["usage"] == first["usage"] and second["finish_reason"] == "stop"
    assert (second["attempts"], second["attempt_log"], second["cost"]) == (0, [], None)
    assert (second["provider"], second["model"]) == ("testllm", "test-model")
    assert first["cost"]["known"] is True
    assert list(CostLog.objects.values_list("run_id", flat=True)) == [Run.objects.get(cached=False).pk]
    assert not BudgetReservation.objects.filter(run_id=second["id"]).exists()


def test_a_seed_makes_a_sampled_request_cacheable(alice_client, version, openai_server, worker):
    params = {"temperature": 0.9, "seed": 7, "cache": {"ttl": 60}}
    _ok(_post(alice_client, **params))

    assert _ok(_post(alice_client, **params))["cached"] is True
    assert len(openai_server.chat_requests()) == 1


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"temperature": 0.7, "cache": {"ttl": 60}}, {"temperature": 0.7, "cache": {"ttl": 60}}),  # sampled
        ({"cache": {"ttl": 60}}, {"cache": {"ttl": 60}}),  # the provider's default temperature
        ({"temperature": 0}, {"temperature": 0}),  # no `cache`: not asked for
        (CACHED, {"temperature": 0}),  # stored, but the second does not ask for it
        (CACHED, {**CACHED, "max_tokens": 20}),  # another parameter sent
        (CACHED, {**CACHED, "fallbacks": ["testllm/backup"]}),  # other models
    ],
)
def test_other_requests_are_not_answered_from_the_cache(alice_client, version, openai_server, worker, first, second):
    _ok(_post(alice_client, **first))

    assert _ok(_post(alice_client, **second))["cached"] is False
    assert len(openai_server.chat_requests()) == 2


def test_other_messages_are_not_answered_from_the_cache(alice_client, version, openai_server, worker):
    _ok(_post(alice_client, name="Ada", **CACHED))

    assert _ok(_post(alice_client, name="Bo", **CACHED))["cached"] is False
    assert [r.body["messages"][0]["content"] for r in openai_server.chat_requests()] == [
        "Say hello to Ada.",
        "Say hello to Bo.",
    ]


def test_another_projects_identical_request_is_not_answered_from_this_ones_cache(
    alice_client, bob, bob_client, version, openai_server, worker
):
    prompt_with_version(bob, model="testllm/test-model")  # the same prompt, model and messages
    _ok(_post(alice_client, **CACHED))

    assert _ok(_post(bob_client, **CACHED))["cached"] is False
    assert len(openai_server.chat_requests()) == 2


def test_a_cached_answer_is_not_refused_by_a_spent_budget(alice, alice_client, version, openai_server, worker):
    _ok(_post(alice_client, **CACHED))
    BudgetFactory(owner=alice, amount=Decimal("0"))

    assert _ok(_post(alice_client, **CACHED))["cached"] is True
    assert_error(_post(alice_client, name="Bo", **CACHED), 402, "budget_exceeded")  # a provider call is refused


def test_a_cached_answer_counts_towards_the_keys_tokens_per_minute(alice, alice_client, version, worker):
    if time.time() % 60 > 45:  # the three calls must count in one clock minute
        time.sleep(61 - time.time() % 60)
    key = APIKey.objects.get(created_by=alice, name="test")  # the key alice_client authenticates with
    key.tokens_per_minute = 1000  # a limit applies, so the first run's tokens are counted
    key.save()
    first = _ok(_post(alice_client, **CACHED))
    key.tokens_per_minute = 2 * first["usage"]["total_tokens"]
    key.save()

    assert _ok(_post(alice_client, **CACHED))["cached"] is True  # under the limit, then at it

    assert_error(_post(alice_client, **CACHED), 429, "tokens_rate_limited")


def test_an_answer_is_reused_only_while_it_is_at_most_ttl_seconds_old(alice_client, version, openai_server, worker):
    _ok(_post(alice_client, temperature=0, cache={"ttl": 60}))
    time.sleep(1.2)

    # Stored for 60 s, but this request takes answers at most 1 s old: the provider answers again.
    assert _ok(_post(alice_client, temperature=0, cache={"ttl": 1}))["cached"] is False
    assert _ok(_post(alice_client, temperature=0, cache={"ttl": 60}))["cached"] is True
    time.sleep(1.2)
    assert _ok(_post(alice_client, temperature=0, cache={"ttl": 1}))["cached"] is False  # stored for 1 s: expired
    assert len(openai_server.chat_requests()) == 3


def test_a_fallbacks_answer_is_cached_with_the_model_that_gave_it(alice_client, version, openai_server, worker):
    params = {**CACHED, "fallbacks": ["testllm/backup"]}
    openai_server.enqueue(rate_limited(retry_after="30"), answer("From the backup."))
    _ok(_post(alice_client, **params))

    second = _ok(_post(alice_client, **params))

    assert (second["cached"], second["model"], second["output"]) == (True, "backup", "From the backup.")
    assert len(openai_server.chat_requests()) == 2


def test_a_batch_of_identical_items_calls_the_provider_once_and_completes(alice, version, openai_server, worker):
    items = [{"variables": {"name": "Ada"}, "key": f"k{n}"} for n in range(4)]
    batch, _ = batch_services.batch_create(
        project=alice.personal_project,
        created_by=alice,
        api_key=None,
        prompt=str(version.prompt_id),
        items=batch_files.rows_from_items(items),
        concurrency=1,
        params=CACHED,
    )

    # A cached run finishes inside the dispatch that creates it; the batch still goes on to the end.
    assert _wait_for_batch(batch.pk, timeout=20).status == Batch.Status.COMPLETED
    assert sorted(Run.objects.values_list("cached", flat=True)) == [False, True, True, True]
    assert len(openai_server.chat_requests()) == 1
