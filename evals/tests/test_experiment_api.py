"""The experiments API: create, follow to completion on the real worker, read the summary, the rows per
example and a comparison, cancel; bad input is a 400 naming the field; bob sees none of alice's."""

import pytest

from evals.models import Experiment
from evals.tests.conftest import make_dataset
from evals.tests.test_experiment_services import wait_for_experiment
from providers.tests.openai_server import answer, slow

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"prompt": "greet", "dataset": "greetings", "versions": [3, 4], "scorers": ["exact_match"], "concurrency": 1}


def test_create_follow_and_read_the_results(alice, alice_client, two_versions, openai_server, second_server, worker):
    make_dataset(alice.personal_project, examples=[(f"n{i}", "yes") for i in range(4)])
    second_server.set_default(answer("yes"))  # version 4 right on every example, version 3 on none

    created = alice_client.post("/api/v1/experiments", {**BODY, "name": "v4?"}, format="json")

    assert created.status_code == 201, created.content
    body = created.json()
    assert created["Location"] == body["url"]
    assert (body["status"], body["name"], body["dataset_name"], body["dataset_version"]) == (
        "running",
        "v4?",
        "greetings",
        1,
    )
    assert [(arm["position"], arm["ref"], arm["version"]) for arm in body["arms"]] == [(0, "3", 3), (1, "4", 4)]
    assert body["scorers"] == [{"name": "exact_match", "options": {}, "threshold": 0.5}]
    assert body["summary"] is None
    wait_for_experiment(Experiment.objects.get(pk=body["id"]))

    detail = alice_client.get(f"/api/v1/experiments/{body['id']}").json()
    assert detail["status"] == "completed"
    base, cand = detail["summary"]["arms"]
    assert (base["scores"]["exact_match"]["mean"], cand["scores"]["exact_match"]["mean"]) == (0.0, 1.0)
    assert detail["summary"]["comparisons"][0] | {"p_value": None} == {
        "baseline": 0,
        "candidate": 1,
        "scorer": "exact_match",
        "better": 4,
        "worse": 0,
        "same": 0,
        "mean_delta": 1.0,
        "p_value": None,
        "verdict": "no significant difference",  # 4 of 4: p = 0.125
    }
    assert detail["summary"]["comparisons"][0]["p_value"] == 0.125

    page = alice_client.get(f"/api/v1/experiments/{body['id']}/examples?page_size=3").json()
    assert page["count"] == 4 and len(page["results"]) == 3 and page["next"]
    row = page["results"][0]
    assert row["example"]["position"] == 1 and row["example"]["variables"] == {"name": "n0"}
    assert [arm["output"] for arm in row["arms"]] == ["Hello from the test server.", "yes"]
    assert row["arms"][1]["scores"]["exact_match"]["passed"] is True
    second = alice_client.get(f"/api/v1/experiments/{body['id']}/examples?page_size=3&page=2").json()
    assert [r["example"]["position"] for r in second["results"]] == [4]

    compared = alice_client.get(f"/api/v1/experiments/{body['id']}/compare?candidate=1&scorer=exact_match")
    assert compared.status_code == 200, compared.content
    assert [e["position"] for e in compared.json()["better"]] == [1, 2, 3, 4]
    assert compared.json()["verdict"] == "no significant difference"
    bad = alice_client.get(f"/api/v1/experiments/{body['id']}/compare?candidate=7&scorer=exact_match")
    assert bad.status_code == 400 and "candidate" in bad.json()["error"]["fields"]

    listed = alice_client.get("/api/v1/experiments?prompt=greet").json()
    assert [e["id"] for e in listed["results"]] == [body["id"]]
    assert alice_client.get("/api/v1/experiments?prompt=other").status_code == 404

    again = alice_client.post(f"/api/v1/experiments/{body['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_cancelable"


def test_cancel(alice, alice_client, two_versions, openai_server, second_server, worker):
    make_dataset(alice.personal_project)
    openai_server.set_default(slow(0.5, "late"))
    second_server.set_default(slow(0.5, "late"))
    experiment_id = alice_client.post("/api/v1/experiments", BODY, format="json").json()["id"]

    canceled = alice_client.post(f"/api/v1/experiments/{experiment_id}/cancel")

    assert canceled.status_code == 200, canceled.content
    assert canceled.json()["status"] == "canceled"
    assert {arm["batch_status"] for arm in canceled.json()["arms"]} == {"canceled"}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"prompt": "nope"}, "prompt"),
        ({"dataset": "nope"}, "dataset"),
        ({"dataset_version": 2}, "dataset_version"),
        ({"versions": []}, "versions"),
        ({"versions": [3, 12]}, "versions.1"),
        ({"versions": [3, 0]}, "versions.1"),
        ({"versions": [3, {"v": 4}]}, "versions.1"),
        ({"scorers": ["nope"]}, "scorers.0.name"),
        ({"scorers": [{"name": "exact_match", "threshold": 2}]}, "scorers.0.threshold"),
        ({"concurrency": 99}, "concurrency"),
        ({"params": {"temperature": 9}}, "params.temperature"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(alice, alice_client, two_versions, changes, field):
    make_dataset(alice.personal_project, examples=[("a", "x")])

    response = alice_client.post("/api/v1/experiments", {**BODY, **changes}, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"], response.json()
    assert not Experiment.objects.exists()


def test_bob_finds_none_of_alices_experiments(alice, alice_client, bob_client, two_versions, worker):
    make_dataset(alice.personal_project, examples=[("a", "x")])
    experiment_id = alice_client.post("/api/v1/experiments", BODY, format="json").json()["id"]
    wait_for_experiment(Experiment.objects.get(pk=experiment_id))

    for path in ("", "/examples", "/compare?candidate=1&scorer=exact_match"):
        response = bob_client.get(f"/api/v1/experiments/{experiment_id}{path}")
        assert response.status_code == 404, (path, response.content)
    assert bob_client.post(f"/api/v1/experiments/{experiment_id}/cancel").status_code == 404
    assert bob_client.get("/api/v1/experiments").json()["count"] == 0
    # Bob's own experiment cannot name alice's prompt or dataset either.
    response = bob_client.post("/api/v1/experiments", BODY, format="json")
    assert response.status_code == 400 and "prompt" in response.json()["error"]["fields"]
    assert bob_client.get("/api/v1/experiments/not-a-uuid").status_code == 404
