"""POST/GET /api/v1/runs and the seed alias POST /api/v1/run: validation before queueing,
idempotency, cancel, filters and owner isolation. Execution itself is in test_execution.py."""

from decimal import Decimal

import pytest

from billing.models import CostLog, ModelPrice
from prompts import services as prompt_services
from prompts.tests.factories import prompt_with_version
from providers.tests.factories import ProviderFactory
from providers.tests.openai_server import answer
from runs.models import Run
from runs.tests.worker import wait_for_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def provider(provider_factory):
    return provider_factory(name="testllm")


@pytest.fixture
def greet(alice, provider):
    prompt, _ = prompt_with_version(alice, model="testllm/test-model")
    return prompt


def test_bad_variables_create_no_run(alice_client, greet):
    response = alice_client.post("/api/v1/runs", {"prompt": "greet", "variables": {"name": 3}}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"variables.name": ["Expected string, got integer."]}
    assert Run.objects.count() == 0


def test_unknown_prompt_is_400_naming_the_field(alice_client, provider):
    response = alice_client.post("/api/v1/runs", {"prompt": "nope"}, format="json")

    assert response.status_code == 400
    assert "prompt" in response.json()["error"]["fields"]


def test_unknown_provider_is_rejected_before_queueing(alice_client, alice, provider):
    """A version's provider removed since the version was saved."""
    gone = ProviderFactory(name="gone")
    prompt_with_version(alice, name="other", model="gone/model")
    gone.delete()

    response = alice_client.post("/api/v1/runs", {"prompt": "other", "variables": {"name": "x"}}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_provider"
    assert Run.objects.count() == 0


def test_disabled_provider_is_rejected(alice_client, greet, provider):
    provider.enabled = False
    provider.save()

    response = alice_client.post("/api/v1/runs", {"prompt": "greet", "variables": {"name": "x"}}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "provider_disabled"
    assert Run.objects.count() == 0


def test_model_the_provider_does_not_list_is_rejected(alice_client, greet, openai_server):
    response = alice_client.post(
        "/api/v1/runs", {"prompt": "greet", "variables": {"name": "x"}, "model": "testllm/not-served"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "model_not_found"
    assert response.json()["error"]["fields"].keys() == {"model"}
    assert Run.objects.count() == 0


def test_bad_params_and_unknown_fields_are_400(alice_client, greet):
    response = alice_client.post(
        "/api/v1/runs",
        {"prompt": "greet", "variables": {"name": "x"}, "params": {"temperature": 9}, "colour": "red"},
        format="json",
    )

    assert response.status_code == 400
    assert "colour" in response.json()["error"]["fields"]

    response = alice_client.post(
        "/api/v1/runs", {"prompt": "greet", "variables": {"name": "x"}, "params": {"temperature": 9}}, format="json"
    )
    assert response.status_code == 400
    assert "params.temperature" in response.json()["error"]["fields"]
    assert Run.objects.count() == 0


def test_create_returns_202_with_the_run_and_its_url(alice_client, alice, greet):
    response = alice_client.post(
        "/api/v1/runs", {"prompt": "greet", "variables": {"name": "Ada"}, "metadata": {"team": "x"}}, format="json"
    )

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert body["url"].endswith(f"/api/v1/runs/{body['id']}")
    assert response["Location"] == body["url"]
    run = Run.objects.get(pk=body["id"])
    assert run.created_by == alice
    assert run.api_key is not None and run.api_key.created_by == alice
    assert run.rendered_input == [{"role": "user", "content": "Say hello to Ada."}]
    assert (run.provider, run.model) == ("testllm", "test-model")
    assert run.params == {"max_tokens": 32}
    assert run.metadata == {"team": "x"}


def test_without_version_or_label_production_wins_over_latest(alice_client, alice, greet):
    prompt_services.prompt_version_create(
        prompt=greet,
        created_by=alice,
        template="Version two {{ name }}",
        variables={"name": {}},
        model="testllm/test-model",
    )
    response = alice_client.post("/api/v1/runs", {"prompt": "greet", "variables": {"name": "A"}}, format="json")
    assert Run.objects.get(pk=response.json()["id"]).prompt_version.number == 2

    prompt_services.label_move(prompt=greet, label="production", version_number=1, moved_by=alice)
    response = alice_client.post("/api/v1/runs", {"prompt": "greet", "variables": {"name": "A"}}, format="json")
    assert Run.objects.get(pk=response.json()["id"]).prompt_version.number == 1

    response = alice_client.post(
        "/api/v1/runs", {"prompt": "greet", "label": "latest", "variables": {"name": "A"}}, format="json"
    )
    assert Run.objects.get(pk=response.json()["id"]).prompt_version.number == 2


def test_param_overrides_merge_over_the_versions(alice_client, greet):
    response = alice_client.post(
        "/api/v1/runs", {"prompt": "greet", "variables": {"name": "A"}, "params": {"temperature": 0.5}}, format="json"
    )

    assert Run.objects.get(pk=response.json()["id"]).params == {"max_tokens": 32, "temperature": 0.5}


def test_idempotency_key_replays_the_same_run_and_refuses_another_body(alice_client, greet):
    body = {"prompt": "greet", "variables": {"name": "Ada"}}
    first = alice_client.post("/api/v1/runs", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = alice_client.post("/api/v1/runs", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    other = alice_client.post(
        "/api/v1/runs", {**body, "variables": {"name": "Bob"}}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )

    assert first.json()["id"] == again.json()["id"]
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert Run.objects.count() == 1


def test_idempotency_keys_are_per_owner(alice_client, bob_client, bob, greet):
    prompt_with_version(bob, model="testllm/test-model")
    body = {"prompt": "greet", "variables": {"name": "Ada"}}

    a = alice_client.post("/api/v1/runs", body, format="json", HTTP_IDEMPOTENCY_KEY="same")
    b = bob_client.post("/api/v1/runs", body, format="json", HTTP_IDEMPOTENCY_KEY="same")

    assert a.status_code == b.status_code == 202
    assert a.json()["id"] != b.json()["id"]


def test_seed_alias_accepts_prompt_version_id_and_model(alice_client, alice, greet, openai_server):
    openai_server.set_models(["test-model", "other-model"])
    version = greet.versions.get(number=1)

    response = alice_client.post(
        "/api/v1/run",
        {"prompt_version_id": str(version.pk), "variables": {"name": "Ada"}, "model": "testllm/other-model"},
        format="json",
    )

    assert response.status_code == 202
    run = Run.objects.get(pk=response.json()["id"])
    assert run.prompt_version == version
    assert run.model == "other-model"


def test_seed_alias_also_takes_the_new_shape(alice_client, greet):
    response = alice_client.post("/api/v1/run", {"prompt": "greet", "variables": {"name": "A"}}, format="json")

    assert response.status_code == 202


def test_seed_alias_refuses_another_owners_version(bob_client, greet):
    version = greet.versions.get(number=1)

    response = bob_client.post("/api/v1/run", {"prompt_version_id": str(version.pk)}, format="json")

    assert response.status_code == 400
    assert "prompt_version_id" in response.json()["error"]["fields"]
    assert Run.objects.count() == 0


def test_wait_out_of_bounds_is_400(alice_client, greet):
    response = alice_client.post(
        "/api/v1/runs?wait=500", {"prompt": "greet", "variables": {"name": "A"}}, format="json"
    )

    assert response.status_code == 400
    assert "wait" in response.json()["error"]["fields"]
    assert Run.objects.count() == 0


def test_cancel_a_queued_run_and_not_a_finished_one(alice_client, greet):
    run_id = alice_client.post("/api/v1/runs", {"prompt": "greet", "variables": {"name": "A"}}, format="json").json()[
        "id"
    ]

    response = alice_client.post(f"/api/v1/runs/{run_id}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "canceled"

    again = alice_client.post(f"/api/v1/runs/{run_id}/cancel")
    assert again.status_code == 409
    assert Run.objects.get(pk=run_id).status == Run.Status.CANCELED


def test_runs_are_invisible_to_other_owners(alice_client, bob_client, greet):
    run_id = alice_client.post("/api/v1/runs", {"prompt": "greet", "variables": {"name": "A"}}, format="json").json()[
        "id"
    ]

    assert bob_client.get(f"/api/v1/runs/{run_id}").status_code == 404
    assert bob_client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 404
    assert bob_client.get("/api/v1/runs").json()["count"] == 0
    assert bob_client.post("/api/v1/runs", {"prompt": "greet"}, format="json").status_code == 400
    assert Run.objects.get(pk=run_id).status == Run.Status.QUEUED


def test_list_filters(alice_client, alice, greet):
    prompt_services.prompt_version_create(
        prompt=greet, created_by=alice, template="v2 {{ name }}", variables={"name": {}}, model="testllm/test-model"
    )
    one = alice_client.post(
        "/api/v1/runs", {"prompt": "greet", "version": 1, "variables": {"name": "A"}}, format="json"
    )
    alice_client.post("/api/v1/runs", {"prompt": "greet", "version": 2, "variables": {"name": "A"}}, format="json")
    alice_client.post(f"/api/v1/runs/{one.json()['id']}/cancel")

    assert alice_client.get("/api/v1/runs").json()["count"] == 2
    assert alice_client.get("/api/v1/runs?version=1").json()["results"][0]["id"] == one.json()["id"]
    assert alice_client.get("/api/v1/runs?status=canceled").json()["count"] == 1
    assert alice_client.get(f"/api/v1/runs?prompt={greet.pk}").json()["count"] == 2
    assert alice_client.get("/api/v1/runs?prompt=greet&status=queued").json()["count"] == 1
    assert alice_client.get("/api/v1/runs?created_after=2999-01-01T00:00:00Z").json()["count"] == 0
    assert alice_client.get("/api/v1/runs?status=bogus").status_code == 400
    newest_first = [r["version"] for r in alice_client.get("/api/v1/runs").json()["results"]]
    assert newest_first == [2, 1]


@pytest.mark.django_db(transaction=True)
def test_wait_returns_the_finished_run_with_usage_and_cost(alice_client, greet, openai_server, worker):
    ModelPrice.objects.create(
        provider="testllm",
        model="test-model",
        input_per_mtok=Decimal("1"),
        output_per_mtok=Decimal("2"),
        effective_from="2020-01-01",
    )
    openai_server.enqueue(answer("Hello Ada, nice to meet you."))

    response = alice_client.post(
        "/api/v1/runs?wait=15", {"prompt": "greet", "variables": {"name": "Ada"}}, format="json"
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["output"] == "Hello Ada, nice to meet you."
    usage = body["usage"]
    assert usage["prompt_tokens"] == 4  # the test server counts words: "Say hello to Ada."
    assert usage["completion_tokens"] == 6
    assert usage["total_tokens"] == 10
    assert usage["estimated"] is False
    expected = (Decimal(4) * 1 + Decimal(6) * 2) / Decimal(1_000_000)
    assert Decimal(body["cost"]["amount"]) == expected
    assert body["cost"]["known"] is True
    assert CostLog.objects.get(run_id=body["id"]).total_cost == expected
    assert wait_for_run(body["id"]).latency_ms is not None
