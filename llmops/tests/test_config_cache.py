"""The per-process config cache (llmops/config_cache.py) on a gateway call: a repeated call reads no
provider, price, budget or webhook endpoint from the database, one request reads the generation token
once, and every write to those rows is seen by the very next call, in this process and (with Redis)
in another one."""

import os
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services as account_services
from billing import services as billing_services
from billing.models import BudgetReservation, CostLog, ModelPrice
from llmops import config_cache
from llmops.tests.processes import django_child
from prompts import services as prompt_services
from prompts.tests.factories import prompt_with_version
from providers import services as provider_services
from runs.models import Run
from webhooks import services as webhook_services
from webhooks.models import WebhookDelivery, WebhookEvent

MESSAGES = [{"role": "user", "content": "Say hi."}]
# The tables a repeated call must not read (the run and cost writes are its own).
CACHED_TABLES = (
    '"runs_provider"',
    '"billing_modelprice"',
    '"billing_budget"',
    '"accounts_webhookendpoint"',
    '"prompts_prompt"',
    '"prompts_promptlabel"',
    '"prompts_promptversion"',
)

pytestmark = pytest.mark.django_db(transaction=True)  # the invalidation runs when a write commits


@pytest.fixture
def cached(settings, fresh_cache):
    settings.CONFIG_CACHE_SECONDS = 30
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    config_cache.invalidate()
    yield
    config_cache.invalidate()


@pytest.fixture
def price():
    return ModelPrice.objects.create(
        provider="local",
        model="*",
        input_per_mtok=Decimal("1000"),
        output_per_mtok=Decimal("2000"),
        effective_from=timezone.now().date().replace(year=2020),
    )


@pytest.fixture
def client(alice, provider_factory, price):
    provider_factory(name="local")
    _, key = account_services.api_key_create(project=alice.personal_project, created_by=alice, name="gateway")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api


def _call(client, model="local/test-model"):
    body = {"model": model, "messages": MESSAGES}
    if model.startswith("prompt:"):
        body["variables"] = {"name": "Ada"}
    return client.post("/v1/chat/completions", body, format="json")


def _reads_of_cached_tables(client, model="local/test-model"):
    with CaptureQueriesContext(connection) as queries:
        response = _call(client, model)
    assert response.status_code == 200, response.json()
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    return [sql for sql in selects if any(table in sql for table in CACHED_TABLES)]


def test_a_repeated_call_reads_no_provider_price_budget_or_endpoint(cached, client, alice):
    billing_services.budget_create(project=alice.personal_project, amount=Decimal("100"), window="month")
    assert _call(client).status_code == 200

    reads = _reads_of_cached_tables(client)

    # The budget's rows are still locked, and its usage read, for the hold: only *which* budgets apply
    # is cached (and the price the hold is computed with).
    assert len(reads) == 2 and all(sql.startswith('SELECT "billing_budget"') for sql in reads), reads


def test_without_budgets_or_endpoints_a_repeated_call_reads_none_of_them(cached, client):
    _call(client)

    assert _reads_of_cached_tables(client) == []


@pytest.fixture
def greet(alice, client):
    prompt, _ = prompt_with_version(alice, model="local/test-model")
    prompt_services.prompt_version_create(prompt=prompt, created_by=alice, template="Hi {{ name }}.")
    prompt_services.label_move(prompt=prompt, label="production", version_number=1, moved_by=alice)
    return prompt


@pytest.mark.parametrize("model", ["prompt:greet", "prompt:greet@production", "prompt:greet@2"])
def test_a_repeated_call_of_a_prompt_reads_no_prompt_label_or_version(cached, client, greet, model):
    assert _call(client, model).status_code == 200

    assert _reads_of_cached_tables(client, model) == []


def test_a_label_moved_is_run_by_the_next_call(cached, client, greet, alice):
    first = Run.objects.get(pk=_call(client, "prompt:greet@production").json()["run_id"])
    assert first.prompt_version.number == 1

    prompt_services.label_move(prompt=greet, label="production", version_number=2, moved_by=alice)

    second = Run.objects.get(pk=_call(client, "prompt:greet@production").json()["run_id"])
    assert second.prompt_version.number == 2
    assert second.rendered_input[0]["content"] == "Hi Ada."  # v2's template
    third = Run.objects.get(pk=_call(client, "prompt:greet").json()["run_id"])  # production by default
    assert third.prompt_version.number == 2


def test_off_reads_them_on_every_call(settings, client, fresh_cache):
    settings.CONFIG_CACHE_SECONDS = 0
    _call(client)

    assert len(_reads_of_cached_tables(client)) >= 3  # provider, price, budgets, endpoints


def test_one_request_reads_the_generation_token_once(cached, client, monkeypatch):
    _call(client)
    reads = []
    real_get = cache.get

    def counting_get(key, *args, **kwargs):
        if key == config_cache.GENERATION_KEY:
            reads.append(key)
        return real_get(key, *args, **kwargs)

    monkeypatch.setattr(cache, "get", counting_get)
    assert _call(client).status_code == 200

    assert len(reads) == 1


def test_a_disabled_provider_refuses_the_next_call(cached, client):
    assert _call(client).status_code == 200

    provider_services.provider_set(name="local", enabled=False)

    response = _call(client)
    assert response.status_code == 400
    assert "disabled" in response.json()["error"]["message"]


def test_a_changed_price_is_charged_on_the_next_call(cached, client, price):
    _call(client)
    price.input_per_mtok = Decimal("0")
    price.output_per_mtok = Decimal("0")
    price.save()

    run_id = _call(client).json()["run_id"]

    assert CostLog.objects.get(run_id=run_id).total_cost == 0


def test_a_new_budget_holds_the_next_call(cached, client, alice):
    _call(client)

    budget = billing_services.budget_create(project=alice.personal_project, amount=Decimal("100"), window="month")
    run_id = _call(client).json()["run_id"]
    assert BudgetReservation.objects.filter(budget=budget, run_id=run_id).exists()

    billing_services.budget_update(budget=budget, amount=Decimal("0.000001"))
    assert _call(client).status_code == 402


def test_a_new_and_a_deactivated_endpoint_are_seen_by_the_next_event(cached, client, alice):
    _call(client)

    endpoint, _ = webhook_services.webhook_endpoint_create(
        project=alice.personal_project, url="http://127.0.0.1:9/hook", events=[WebhookEvent.RUN_SUCCEEDED]
    )
    first = _call(client).json()["run_id"]
    assert WebhookDelivery.objects.filter(endpoint=endpoint, payload__id=first).exists()

    webhook_services.webhook_endpoint_update(endpoint=endpoint, is_active=False)
    second = _call(client).json()["run_id"]
    assert not WebhookDelivery.objects.filter(endpoint=endpoint, payload__id=second).exists()
    assert Run.objects.get(pk=second).status == Run.Status.SUCCEEDED


def test_an_unreachable_shared_cache_reads_the_database(cached, client, monkeypatch):
    _call(client)

    def down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(config_cache, "cache", type("Down", (), {"get": down, "add": down, "set": down})())

    assert config_cache.generation() is None
    assert config_cache.ProcessCache("probe").fetch("k", lambda: "read") == "read"


# --- another process -------------------------------------------------------------------------

_CHILD = """
import sys
from accounts.models import Project
from billing.selectors import budget_ids_applying
project = Project.objects.get(pk=sys.stdin.readline().strip())
for line in sys.stdin:
    print(len(budget_ids_applying(project=project, api_key=None)), flush=True)
"""


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="invalidation across processes goes through Redis")
def test_a_budget_created_here_applies_at_once_in_another_process(cached, alice):
    project = alice.personal_project
    with django_child(_CHILD, CONFIG_CACHE_SECONDS="300") as child:
        child.send(str(project.pk))

        assert child.ask() == "0"  # read from the database, now cached in the child
        assert child.ask() == "0"  # from its cache

        billing_services.budget_create(project=project, amount=Decimal("1"), window="month")

        assert child.ask() == "1"
