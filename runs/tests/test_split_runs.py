"""Runs of a label with an A/B split (prompts.splits through runs.services.run_create, POST /api/v1/runs
and the gateway's `user`): the weighted distribution over many keys, stickiness per key, random arms
without a key, and what each run records (its label, that the split picked it, a hash of the key)."""

import math
from collections import Counter

import pytest

from prompts import services as prompt_services
from prompts.tests.factories import prompt_with_version
from runs import services
from runs.models import Run

pytestmark = pytest.mark.django_db

SPLIT_90_10 = [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]


@pytest.fixture
def provider(provider_factory):
    return provider_factory(name="testllm")


@pytest.fixture
def greet(alice, provider):
    prompt, _ = prompt_with_version(alice, model="testllm/test-model")
    prompt_services.prompt_version_create(prompt=prompt, created_by=alice, template="Hi {{ name }}!")
    prompt_services.label_split_set(
        prompt=prompt, label="production", version_number=1, split=SPLIT_90_10, moved_by=alice
    )
    return prompt


def _run(alice, **fields):
    fields.setdefault("prompt", "greet")
    fields.setdefault("variables", {"name": "Ada"})
    run, _ = services.run_create(project=alice.personal_project, created_by=alice, api_key=None, **fields)
    return run


def test_distinct_keys_split_by_the_weights_within_tolerance(alice, greet):
    """2000 distinct keys at 90/10: the share of version 2 is binomial, sd = sqrt(0.1 * 0.9 / 2000) = 0.67
    percentage points, so +-3 points is 4.5 sd: a correct split fails this once in ~150,000 runs (the
    label's id, hashed with each key, is new every run), a split off by 3 points or more nearly always."""
    n = 2000
    versions = Counter(_run(alice, split_key=f"user-{i}").prompt_version.number for i in range(n))

    assert set(versions) == {1, 2}
    sd = math.sqrt(0.1 * 0.9 / n)
    assert 4 * sd < 3 * 0.01  # the tolerance stated above is more than 4 sd
    assert abs(versions[2] / n - 0.10) <= 0.03, versions


def test_the_same_key_always_gets_the_same_version(alice, greet):
    for key in ("alice@example.com", "user-7", "user-8"):
        versions = {_run(alice, split_key=key).prompt_version.number for _ in range(50)}
        assert len(versions) == 1, (key, versions)


def test_a_changed_split_moves_only_the_keys_whose_bucket_changed_arm(alice, greet):
    # A key's bucket (0..99) stays; the arms' ranges move: at 90/10 buckets 90..99 get version 2, at
    # 10/90 buckets 10..99 do. So every key on 2 stays there, and keys in 10..89 move from 1 to 2.
    keys = [f"k{i}" for i in range(300)]
    before = {key: _run(alice, split_key=key).prompt_version.number for key in keys}
    prompt_services.label_split_set(
        prompt=greet,
        label="production",
        version_number=1,
        split=[{"version": 1, "weight": 10}, {"version": 2, "weight": 90}],
        moved_by=None,
    )
    after = {key: _run(alice, split_key=key).prompt_version.number for key in keys}

    assert all(after[key] == 2 for key in keys if before[key] == 2)  # nobody on 2 is moved back
    assert 0.70 <= sum(after[key] == 2 for key in keys) / len(keys) <= 0.98


def test_without_a_key_both_arms_get_runs(alice, greet):
    # At 10%, 300 runs with none on version 2 has probability 0.9**300 < 1e-13.
    versions = Counter(_run(alice).prompt_version.number for _ in range(300))

    assert versions[1] > versions[2] > 0
    assert 0.03 <= versions[2] / 300 <= 0.20  # 10% +- 7 points: sd 1.7 points, so 4 sd


def test_a_run_records_its_label_its_arm_and_only_a_hash_of_its_key(alice, greet):
    run = _run(alice, label="production", split_key="alice@example.com")

    run.refresh_from_db()
    assert (run.label, run.split_arm) == ("production", True)
    assert run.prompt_version.number in (1, 2)
    assert run.split_key_hash == services.split_key_hash("alice@example.com")
    assert len(run.split_key_hash) == 64
    assert "alice@example.com" not in str(Run.objects.filter(pk=run.pk).values().get())
    assert _run(alice, split_key="alice@example.com").split_key_hash == run.split_key_hash
    assert _run(alice, split_key="bob@example.com").split_key_hash != run.split_key_hash


def test_runs_that_do_not_go_through_a_split_record_so(alice, greet):
    by_version = _run(alice, version=2, split_key="u")
    latest = _run(alice, label="latest", split_key="u")
    prompt_services.label_move(prompt=greet, label="staging", version_number=2, moved_by=None)
    staging = _run(alice, label="staging")

    assert (by_version.label, by_version.split_arm, by_version.prompt_version.number) == ("", False, 2)
    assert (latest.label, latest.split_arm) == ("latest", False)
    assert (staging.label, staging.split_arm, staging.split_key_hash) == ("staging", False, "")


def test_the_request_hash_of_a_run_without_a_split_key_is_unchanged(alice, greet):
    """Idempotency keys of runs made before splits existed still match the same request."""
    run = _run(alice, idempotency_key="k-1")
    old_shape = {
        "prompt": "greet",
        "prompt_version_id": None,
        "version": None,
        "label": None,
        "variables": {"name": "Ada"},
        "params": {},
        "model": None,
        "metadata": {},
    }

    assert run.request_hash == services._request_hash(old_shape)
    replay, created = services.run_create(
        project=alice.personal_project,
        created_by=alice,
        api_key=None,
        prompt="greet",
        variables={"name": "Ada"},
        idempotency_key="k-1",
    )
    assert (replay.pk, created) == (run.pk, False)


def test_the_same_idempotency_key_with_another_split_key_is_a_conflict(alice_client, greet):
    body = {"prompt": "greet", "variables": {"name": "Ada"}, "split_key": "u-1"}
    first = alice_client.post("/api/v1/runs", body, format="json", HTTP_IDEMPOTENCY_KEY="k")
    again = alice_client.post("/api/v1/runs", body, format="json", HTTP_IDEMPOTENCY_KEY="k")
    other = alice_client.post("/api/v1/runs", {**body, "split_key": "u-2"}, format="json", HTTP_IDEMPOTENCY_KEY="k")

    assert first.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert other.status_code == 409


def test_the_api_takes_a_split_key_and_shows_the_arm(alice_client, alice, greet):
    response = alice_client.post(
        "/api/v1/runs", {"prompt": "greet", "variables": {"name": "Ada"}, "split_key": "user-42"}, format="json"
    )

    assert response.status_code == 202, response.content
    body = response.json()
    expected = _run(alice, split_key="user-42").prompt_version.number  # sticky: what the key always gets
    assert (body["label"], body["split_arm"], body["version"]) == ("production", True, expected)
    assert body["split_key_hash"] == services.split_key_hash("user-42")
    assert "user-42" not in response.content.decode()
    plain = alice_client.post(
        "/api/v1/runs", {"prompt": "greet", "version": 1, "variables": {"name": "A"}}, format="json"
    )
    assert (plain.json()["label"], plain.json()["split_arm"], plain.json()["split_key_hash"]) == (None, False, None)


@pytest.mark.parametrize(("split_key", "problem"), [("x" * 257, "no more than 256"), ("  ", "blank"), (7, "string")])
def test_a_bad_split_key_is_a_400_naming_it(alice_client, greet, split_key, problem):
    response = alice_client.post(
        "/api/v1/runs", {"prompt": "greet", "variables": {"name": "Ada"}, "split_key": split_key}, format="json"
    )

    assert response.status_code == 400
    assert problem in str(response.json()["error"]["fields"]["split_key"])
    assert Run.objects.count() == 0


def test_the_gateways_user_field_is_the_split_key(alice_client, alice, greet, openai_server):
    def call(user):
        response = alice_client.post(
            "/v1/chat/completions",
            {"model": "prompt:greet@production", "variables": {"name": "Ada"}, "user": user},
            format="json",
        )
        assert response.status_code == 200, response.content
        return Run.objects.get(pk=response.json()["run_id"])

    users = [f"end-user-{i}" for i in range(40)]
    first = {user: call(user) for user in users}
    for user in users[:5]:  # sticky: the same user, the same arm, call after call
        assert {call(user).prompt_version_id for _ in range(3)} == {first[user].prompt_version_id}
    for user, run in first.items():  # the arm the `user` hashes to, as a run with that split_key gets
        assert run.prompt_version.number == _run(alice, split_key=user).prompt_version.number
        assert (run.label, run.split_arm, run.split_key_hash) == ("production", True, services.split_key_hash(user))
    assert {run.prompt_version.number for run in first.values()} <= {1, 2}
