"""Gated labels through the API: a gated label moves (PUT /api/v1/prompts/{ref}/labels/{label}) only to a
version that passed a completed experiment on the gate's dataset's latest version."""

import pytest
from rest_framework.test import APIClient

from accounts import project_services
from accounts.models import Role
from evals.models import Experiment, LabelGate
from evals.tests.conftest import dataset_append, make_dataset
from evals.tests.test_experiment_services import wait_for_experiment
from prompts.models import PromptLabel
from prompts.tests.factories import prompt_with_version
from providers.tests.openai_server import answer

pytestmark = pytest.mark.django_db(transaction=True)

GATE = {"label": "staging", "dataset": "greetings", "scorer": "exact_match", "threshold": 0.8}


def _experiment(client, versions=(3, 4)):
    response = client.post(
        "/api/v1/experiments",
        {"prompt": "greet", "dataset": "greetings", "versions": list(versions), "scorers": ["exact_match"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    return wait_for_experiment(Experiment.objects.get(pk=response.json()["id"]))


def _move(client, version):
    return client.put("/api/v1/prompts/greet/labels/staging", {"version": version}, format="json")


@pytest.fixture
def gated(alice, alice_client, two_versions):
    """`staging` at version 3, then gated on exact_match >= 0.8 over `greetings` (10 examples)."""
    make_dataset(alice.personal_project)
    assert _move(alice_client, 3).status_code == 200
    response = alice_client.post("/api/v1/prompts/greet/gates", GATE, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_gated_label_moves_only_after_a_passing_experiment(alice_client, gated, second_server, worker):
    assert gated | {"created_at": None, "updated_at": None} == {
        **GATE,
        "dataset": str(LabelGate.objects.get().dataset_id),
        "dataset_name": "greetings",
        "created_by": "alice",
        "created_at": None,
        "updated_at": None,
    }
    refused = _move(alice_client, 4)

    assert refused.status_code == 409, refused.content
    error = refused.json()["error"]
    assert error["code"] == "evaluation_required"
    assert "'greetings'" in error["message"] and "exact_match" in error["message"] and "0.8" in error["message"]
    assert "none was found" in error["message"]

    second_server.set_default(answer("yes"))  # version 4 right on every example, version 3 on none
    _experiment(alice_client)
    moved = _move(alice_client, 4)

    assert moved.status_code == 200, moved.content
    assert PromptLabel.objects.get(name="staging").version.number == 4
    # Back to 3 (the baseline, mean 0): gated as any move.
    back = _move(alice_client, 3)
    assert back.status_code == 409 and "the best found is 0" in back.json()["error"]["message"]


def test_a_mean_below_the_threshold_is_refused_and_named(alice_client, gated, second_server, worker):
    second_server.set_default(answer("yes"))
    second_server.enqueue(*[answer("no")] * 3)  # version 4: 7 of 10
    _experiment(alice_client)

    refused = _move(alice_client, 4)

    assert refused.status_code == 409
    assert "the best found is 0.7" in refused.json()["error"]["message"]
    assert PromptLabel.objects.get(name="staging").version.number == 3


def test_significantly_worse_than_the_current_version_is_refused(
    alice, alice_client, two_versions, openai_server, second_server, worker
):
    # 20 examples; version 3 right on all, version 4 wrong on 6: mean 0.7 passes 0.5, but 6 worse and
    # none better is p = 0.031: significantly worse than version 3, where the label is.
    make_dataset(alice.personal_project, examples=[(f"n{i}", "yes") for i in range(20)])
    assert _move(alice_client, 3).status_code == 200
    alice_client.post("/api/v1/prompts/greet/gates", {**GATE, "threshold": 0.5}, format="json")
    openai_server.set_default(answer("yes"))
    second_server.set_default(answer("yes"))
    second_server.enqueue(*[answer("no")] * 6)
    experiment = _experiment(alice_client)
    assert experiment.summary["comparisons"][0]["verdict"] == "worse"

    refused = _move(alice_client, 4)

    assert refused.status_code == 409
    assert "significantly worse" in refused.json()["error"]["message"]


def test_only_an_experiment_on_the_latest_dataset_version_counts(alice_client, gated, second_server, worker):
    second_server.set_default(answer("yes"))
    _experiment(alice_client)
    dataset_append(LabelGate.objects.get().dataset, [("new", "yes")])

    assert _move(alice_client, 4).status_code == 409
    _experiment(alice_client)
    assert _move(alice_client, 4).status_code == 200


def test_removing_the_gate_frees_the_label(alice_client, gated):
    assert alice_client.get("/api/v1/prompts/greet/gates").json()[0]["label"] == "staging"

    assert alice_client.delete("/api/v1/prompts/greet/gates/staging").status_code == 204

    assert _move(alice_client, 4).status_code == 200
    assert alice_client.delete("/api/v1/prompts/greet/gates/staging").status_code == 404
    assert alice_client.get("/api/v1/prompts/greet/gates").json() == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"dataset": "nope"}, "dataset"),
        ({"scorer": "nope"}, "scorer"),
        ({"threshold": 1.5}, "threshold"),
        ({"label": "latest"}, "label"),
        ({"label": "not a slug"}, "label"),
    ],
)
def test_bad_gates_are_a_400_naming_the_field(alice, alice_client, two_versions, changes, field):
    make_dataset(alice.personal_project)

    response = alice_client.post("/api/v1/prompts/greet/gates", {**GATE, **changes}, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not LabelGate.objects.exists()


def test_only_admins_gate_and_ungate(alice, bob, provider_factory):
    project = project_services.project_create(name="Team", slug="team", created_by=alice)
    project_services.member_add(project=project, user=bob, role=Role.EDITOR, acting_role=None)
    prompt_with_version(project, name="greet")
    make_dataset(project)
    LabelGate.objects.create(
        project=project, prompt=project.prompts.get(), label="staging", dataset=project.datasets.get(),
        scorer="exact_match", threshold=0.5,
    )  # fmt: skip
    editor = APIClient()
    editor.force_login(bob)

    created = editor.post("/api/v1/prompts/greet/gates", GATE, format="json", HTTP_X_PROJECT="team")
    removed = editor.delete("/api/v1/prompts/greet/gates/staging", HTTP_X_PROJECT="team")
    listed = editor.get("/api/v1/prompts/greet/gates", HTTP_X_PROJECT="team")

    assert created.status_code == 403 and created.json()["error"]["code"] == "insufficient_role"
    assert removed.status_code == 403
    assert listed.status_code == 200 and len(listed.json()) == 1
    assert LabelGate.objects.count() == 1


def test_bob_cannot_see_or_gate_alices_prompt(alice_client, bob_client, gated):
    assert bob_client.get("/api/v1/prompts/greet/gates").status_code == 404
    assert bob_client.post("/api/v1/prompts/greet/gates", GATE, format="json").status_code == 404
    assert bob_client.delete("/api/v1/prompts/greet/gates/staging").status_code == 404
    assert LabelGate.objects.count() == 1
