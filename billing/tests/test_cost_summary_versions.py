"""GET /api/v1/costs/summary?group_by=version: spend per prompt version, the arms of an A/B split
side by side (billing reads the version through the cost entry's run, never importing runs)."""

from decimal import Decimal

import pytest

from billing.tests.factories import CostLogFactory
from prompts import services as prompt_services
from prompts.tests.factories import prompt_with_version
from runs.tests.factories import RunFactory

pytestmark = pytest.mark.django_db


def _spend(owner, version, *, cost, tokens=(4, 2)):
    run = RunFactory(owner=owner, project=owner.personal_project, prompt_version=version)
    CostLogFactory(run=run, prompt_tokens=tokens[0], completion_tokens=tokens[1], total_cost=Decimal(cost))


def test_spend_is_grouped_by_prompt_version(alice_client, alice, bob):
    prompt, v1 = prompt_with_version(alice, name="greet")
    v2 = prompt_services.prompt_version_create(prompt=prompt, created_by=alice, template="Hi {{ name }}")
    _, other = prompt_with_version(alice, name="other")
    _spend(alice, v1, cost="0.010", tokens=(100, 50))
    _spend(alice, v1, cost="0.020", tokens=(100, 50))
    _spend(alice, v2, cost="0.005", tokens=(10, 5))
    _spend(alice, other, cost="0.001")
    _spend(alice, None, cost="0.100")  # a gateway call naming a model: no version
    _spend(bob, prompt_with_version(bob, name="greet")[1], cost="9")  # another project's

    response = alice_client.get("/api/v1/costs/summary?group_by=version")

    assert response.status_code == 200, response.content
    body = response.json()
    groups = {g["group"]: g for g in body["groups"]}
    assert set(groups) == {"greet v1", "greet v2", "other v1", None}
    assert (groups["greet v1"]["runs"], Decimal(groups["greet v1"]["cost"])) == (2, Decimal("0.03"))
    assert (groups["greet v1"]["prompt_tokens"], groups["greet v1"]["completion_tokens"]) == (200, 100)
    assert (groups["greet v2"]["runs"], Decimal(groups["greet v2"]["cost"])) == (1, Decimal("0.005"))
    assert Decimal(groups[None]["cost"]) == Decimal("0.1")
    assert body["total"]["runs"] == 5
