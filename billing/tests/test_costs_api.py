"""GET /api/v1/costs and /api/v1/costs/summary: the caller's own spend only."""

from decimal import Decimal

import pytest

from billing import services
from billing.models import CostLog, ModelPrice
from prompts.models import Prompt
from prompts.tests.factories import prompt_with_version
from runs.models import Run

pytestmark = pytest.mark.django_db


def _succeeded_run(owner, prompt_name="greet", model="m1", prompt_tokens=1000, completion_tokens=500):
    prompt = Prompt.objects.filter(project=owner.personal_project, name=prompt_name).first()
    version = prompt.versions.get(number=1) if prompt else prompt_with_version(owner, name=prompt_name)[1]
    run = Run.objects.create(
        project=owner.personal_project,
        prompt_version=version,
        rendered_input=[],
        provider="p",
        model=model,
        status=Run.Status.SUCCEEDED,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
    )
    services.cost_record(
        run_id=run.pk,
        project=owner.personal_project,
        api_key=None,
        provider="p",
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        tokens_estimated=False,
        prompt_version_id=run.prompt_version_id,
    )
    return run


@pytest.fixture
def prices(db):
    ModelPrice.objects.create(
        provider="p", model="m1", input_per_mtok=Decimal("2"), output_per_mtok=Decimal("4"), effective_from="2020-01-01"
    )


def test_cost_record_is_unique_per_run(alice, prices):
    run = _succeeded_run(alice)
    with pytest.raises(Exception):  # noqa: B017 - IntegrityError, from whichever backend
        from django.db import transaction

        with transaction.atomic():
            services.cost_record(
                run_id=run.pk,
                project=alice.personal_project,
                api_key=None,
                provider="p",
                model="m1",
                prompt_tokens=1,
                completion_tokens=1,
                tokens_estimated=False,
                prompt_version_id=run.prompt_version_id,
            )
    assert CostLog.objects.filter(run=run).count() == 1


def test_summary_groups_and_totals_own_spend_only(alice_client, alice, bob, prices):
    _succeeded_run(alice, model="m1")  # 1000*2 + 500*4 per million = 0.004
    _succeeded_run(alice, prompt_name="other", model="m1")
    _succeeded_run(alice, model="unpriced")
    _succeeded_run(bob, model="m1")

    by_model = alice_client.get("/api/v1/costs/summary?group_by=model").json()
    groups = {g["group"]: g for g in by_model["groups"]}
    assert Decimal(groups["m1"]["cost"]) == Decimal("0.008")
    assert groups["m1"]["runs"] == 2
    assert groups["unpriced"]["unknown_cost_runs"] == 1
    assert Decimal(groups["unpriced"]["cost"]) == 0
    assert by_model["total"]["runs"] == 3
    assert by_model["total"]["prompt_tokens"] == 3000
    assert by_model["total"]["unknown_cost_runs"] == 1

    by_prompt = alice_client.get("/api/v1/costs/summary?group_by=prompt").json()
    assert {g["group"] for g in by_prompt["groups"]} == {"greet", "other"}

    by_day = alice_client.get("/api/v1/costs/summary").json()
    assert by_day["group_by"] == "day"
    assert len(by_day["groups"]) == 1


def test_summary_date_range_and_bad_input(alice_client, alice, prices):
    _succeeded_run(alice)

    assert alice_client.get("/api/v1/costs/summary?from=2999-01-01T00:00:00Z").json()["total"]["runs"] == 0
    bad = alice_client.get("/api/v1/costs/summary?group_by=colour")
    assert bad.status_code == 400
    assert "group_by" in bad.json()["error"]["fields"]
    reversed_range = alice_client.get("/api/v1/costs/summary?from=2025-01-02T00:00:00Z&to=2025-01-01T00:00:00Z")
    assert reversed_range.status_code == 400
    assert "to" in reversed_range.json()["error"]["fields"]


def test_cost_list_is_owner_scoped(alice_client, bob_client, alice, prices):
    run = _succeeded_run(alice)

    mine = alice_client.get("/api/v1/costs").json()
    assert [c["run"] for c in mine["results"]] == [str(run.pk)]
    assert bob_client.get("/api/v1/costs").json()["count"] == 0
