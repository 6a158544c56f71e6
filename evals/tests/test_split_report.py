"""GET /api/v1/prompts/{ref}/labels/{label}/report (evals.score_selectors.split_report): the runs made
through a label, per arm of its split: counts, tokens, cost, latency percentiles and client scores."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.tests.factories import CostLogFactory
from evals.models import Score
from llmops.tests.helpers import assert_error
from prompts import services as prompt_services
from prompts.tests.factories import prompt_with_version
from runs.models import Run
from runs.tests.factories import RunFactory

pytestmark = pytest.mark.django_db

REPORT = "/api/v1/prompts/greet/labels/production/report"
SPLIT = [{"version": 1, "weight": 50}, {"version": 2, "weight": 30}, {"version": 3, "weight": 20}]


@pytest.fixture
def versions(alice):
    prompt, v1 = prompt_with_version(alice, name="greet")
    v2 = prompt_services.prompt_version_create(prompt=prompt, created_by=alice, template="v2 {{ name }}")
    v3 = prompt_services.prompt_version_create(prompt=prompt, created_by=alice, template="v3 {{ name }}")
    prompt_services.label_split_set(prompt=prompt, label="production", version_number=1, split=SPLIT, moved_by=alice)
    return {1: v1, 2: v2, 3: v3}


def _run(alice, version, *, label="production", status=Run.Status.SUCCEEDED, latency=100, tokens=10, cost="0.01", **kw):
    run = RunFactory(
        owner=alice,
        project=alice.personal_project,
        prompt_version=version,
        label=label,
        split_arm=True,
        status=status,
        latency_ms=latency,
        total_tokens=tokens,
        **kw,
    )
    if cost is not None:
        CostLogFactory(run=run, total_cost=Decimal(cost))
    return run


def test_the_report_compares_the_arms(alice_client, alice, versions):
    # Version 1: ten succeeded runs, latencies 10..100 ms, tokens 10 each, 0.01 each, scored.
    arm1 = [_run(alice, versions[1], latency=10 * i) for i in range(1, 11)]
    # Version 2: one succeeded, one failed (no tokens, no cost), one of unknown cost.
    _run(alice, versions[2], latency=500, tokens=40, cost="0.10")
    _run(alice, versions[2], status=Run.Status.FAILED, latency=None, tokens=None, cost=None)
    unpriced = RunFactory(
        owner=alice, project=alice.personal_project, prompt_version=versions[2], label="production", total_tokens=20
    )
    CostLogFactory(run=unpriced, total_cost=None, input_cost=None, output_cost=None, cost_known=False)
    # Not in the report: a run of another label.
    _run(alice, versions[1], label="staging", latency=9999)
    for run, value in zip(arm1[:4], (1.0, 0.5, 0.0, 0.5), strict=True):
        Score.objects.create(project=alice.personal_project, run=run, name="helpful", value=value, source="api")
    Score.objects.create(project=alice.personal_project, run=arm1[0], name="thumbs_up", value=1, source="api")

    response = alice_client.get(REPORT)

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["label"], body["version"], body["split"], body["currency"]) == ("production", 1, SPLIT, "USD")
    arms = {arm["version"]: arm for arm in body["arms"]}
    assert list(arms) == [1, 2, 3]
    one, two, three = arms[1], arms[2], arms[3]
    assert (one["weight"], one["runs"], one["succeeded"], one["failed"]) == (50, 10, 10, 0)
    assert one["tokens"] == {"sum": 100, "mean": 10.0}
    assert Decimal(one["cost"]["sum"]) == Decimal("0.1")
    assert one["latency_ms"] == {"p50": 50, "p95": 100}  # nearest rank of 10..100
    assert one["scores"] == [
        {"name": "helpful", "mean": 0.5, "count": 4},
        {"name": "thumbs_up", "mean": 1.0, "count": 1},
    ]
    assert (two["runs"], two["succeeded"], two["failed"]) == (3, 2, 1)
    assert two["tokens"] == {"sum": 60, "mean": 30.0}  # the failed run has no count
    assert (Decimal(two["cost"]["sum"]), two["cost"]["unknown_cost_runs"]) == (Decimal("0.1"), 1)
    assert two["scores"] == []
    cost = three.pop("cost")  # version 3 is in the split and has no run yet: an arm of zeros
    assert (Decimal(cost["sum"]), cost["unknown_cost_runs"]) == (0, 0)
    assert three == {
        "version": 3,
        "weight": 20,
        "runs": 0,
        "succeeded": 0,
        "failed": 0,
        "tokens": {"sum": 0, "mean": None},
        "latency_ms": {"p50": None, "p95": None},
        "scores": [],
    }


def test_a_version_no_longer_in_the_split_keeps_its_arm_and_cached_runs_have_no_latency(alice_client, alice, versions):
    prompt = versions[1].prompt
    _run(alice, versions[3], latency=300)
    _run(alice, versions[3], latency=0, cached=True, cost=None)
    prompt_services.label_move(prompt=prompt, label="production", version_number=1, moved_by=alice)

    body = alice_client.get(REPORT).json()

    arms = {arm["version"]: arm for arm in body["arms"]}
    assert body["split"] == []
    assert list(arms) == [3]  # no runs of 1 yet, and no split naming it
    assert (arms[3]["weight"], arms[3]["runs"], arms[3]["latency_ms"]) == (None, 2, {"p50": 300, "p95": 300})


def test_the_report_takes_a_time_range(alice_client, alice, versions):
    old = _run(alice, versions[1])
    Run.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    _run(alice, versions[1])
    since = (timezone.now() - timedelta(days=1)).isoformat()

    recent = alice_client.get(REPORT, {"from": since}).json()
    everything = alice_client.get(REPORT).json()

    assert {a["version"]: a["runs"] for a in recent["arms"]}[1] == 1
    assert {a["version"]: a["runs"] for a in everything["arms"]}[1] == 2
    assert_error(alice_client.get(REPORT, {"from": since, "to": since}), 400, fields={"to"})
    assert_error(alice_client.get(REPORT, {"to": "yesterday"}), 400, fields={"to"})


def test_no_such_label_or_another_projects_prompt_is_a_404(alice_client, bob_client, alice, versions):
    _run(alice, versions[1])

    assert_error(alice_client.get("/api/v1/prompts/greet/labels/canary/report"), 404, fields={"label"})
    assert_error(bob_client.get(REPORT), 404)
    prompt_with_version(alice, name="empty")
    assert_error(alice_client.get("/api/v1/prompts/empty/labels/production/report"), 404)
