"""The datasets API: create, get, update, delete; versions and their examples; append, remove and
save-a-run; another project's dataset is a 404; the evals scopes; bad input is a 400 naming the field."""

import pytest
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import Scope
from evals.models import Dataset, DatasetVersion, Example, Experiment
from evals.tests.factories import dataset_with_examples
from prompts.tests.factories import prompt_with_version
from runs.models import Run
from runs.tests.factories import RunFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/datasets"
ROWS = [
    {"variables": {"q": "capital of France"}, "expected_output": "Paris", "tags": ["geo"]},
    {"variables": {"q": "2+2"}, "expected_output": "4", "reference": "arithmetic"},
]


@pytest.fixture
def qa(alice):
    return dataset_with_examples(alice.personal_project, ROWS, name="qa", created_by=alice)


def _outputs(client, name="qa", **query):
    response = client.get(f"{URL}/{name}/examples", query)
    assert response.status_code == 200, response.content
    return [example["expected_output"] for example in response.json()["results"]]


def test_create_list_get_patch(alice_client):
    created = alice_client.post(URL, {"name": "qa", "description": "Questions."}, format="json")

    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["name"], body["description"], body["latest_version"], body["example_count"]) == (
        "qa",
        "Questions.",
        0,
        0,
    )
    assert created["Location"].endswith("/api/v1/datasets/qa")
    assert [d["name"] for d in alice_client.get(URL).json()["results"]] == ["qa"]
    by_id = alice_client.get(f"{URL}/{body['id']}")
    assert by_id.status_code == 200 and by_id.json()["name"] == "qa"
    patched = alice_client.patch(f"{URL}/qa", {"description": "Checked."}, format="json")
    assert patched.status_code == 200 and patched.json()["description"] == "Checked."
    assert Dataset.objects.get(name="qa").description == "Checked."
    assert alice_client.get(f"{URL}/qa/examples").json()["results"] == []


def test_create_twice_is_a_409_and_a_bad_name_a_400(alice_client):
    alice_client.post(URL, {"name": "qa"}, format="json")

    again = alice_client.post(URL, {"name": "qa"}, format="json")
    bad = alice_client.post(URL, {"name": "not a slug", "extra": 1}, format="json")

    assert again.status_code == 409 and again.json()["error"]["code"] == "name_taken"
    assert bad.status_code == 400
    assert set(bad.json()["error"]["fields"]) == {"extra"}


def test_append_then_remove_and_old_versions_still_list_their_examples(alice_client, qa):
    appended = alice_client.post(f"{URL}/qa/examples", {"examples": [{"expected_output": "new"}]}, format="json")
    assert appended.status_code == 201, appended.content
    assert (appended.json()["number"], appended.json()["example_count"]) == (2, 3)
    paris = Example.objects.get(dataset=qa, expected_output="Paris")

    removed = alice_client.post(f"{URL}/qa/examples/remove", {"ids": [str(paris.pk)]}, format="json")

    assert removed.status_code == 201, removed.content
    assert (removed.json()["number"], removed.json()["removed_count"]) == (3, 1)
    assert _outputs(alice_client, version=1) == ["Paris", "4"]
    assert _outputs(alice_client, version=2) == ["Paris", "4", "new"]
    assert _outputs(alice_client) == ["4", "new"]
    versions = alice_client.get(f"{URL}/qa/versions").json()["results"]
    assert [(v["number"], v["example_count"]) for v in versions] == [(3, 2), (2, 3), (1, 2)]
    assert alice_client.get(f"{URL}/qa").json()["example_count"] == 2


def test_examples_are_paginated_in_position_order(alice_client, alice):
    dataset_with_examples(alice.personal_project, [{"expected_output": str(i)} for i in range(7)], name="many")

    first = alice_client.get(f"{URL}/many/examples", {"page_size": 3}).json()
    third = alice_client.get(f"{URL}/many/examples", {"page_size": 3, "page": 3}).json()

    assert first["count"] == 7
    assert [e["expected_output"] for e in first["results"]] == ["0", "1", "2"]
    assert [e["expected_output"] for e in third["results"]] == ["6"]
    assert [e["position"] for e in first["results"]] == [1, 2, 3]


def test_an_unknown_or_invalid_version_is_named(alice_client, qa):
    missing = alice_client.get(f"{URL}/qa/examples", {"version": 9})
    invalid = alice_client.get(f"{URL}/qa/examples", {"version": "x"})
    blank = alice_client.get(f"{URL}/qa/examples?version=")

    assert missing.status_code == 404 and "version" in missing.json()["error"]["fields"]
    assert invalid.status_code == 400 and "version" in invalid.json()["error"]["fields"]
    assert blank.status_code == 400 and "version" in blank.json()["error"]["fields"]


def test_a_bad_example_is_named_by_index_and_nothing_is_added(alice_client, qa):
    response = alice_client.post(
        f"{URL}/qa/examples",
        {"examples": [{"expected_output": "fine"}, {"variables": "nope"}, {"tags": [1]}, {"id": "x"}]},
        format="json",
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_examples"
    assert set(error["fields"]) == {"examples.1.variables", "examples.2.tags", "examples.3.id"}
    assert Example.objects.filter(dataset=qa).count() == 2
    assert DatasetVersion.objects.filter(dataset=qa).count() == 1


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "examples"),
        ({"examples": []}, "examples"),
        ({"examples": "x"}, "examples"),
        ({"examples": [{}], "note": 5}, "note"),
    ],
)
def test_a_malformed_append_is_a_400_naming_the_field(alice_client, qa, body, field):
    response = alice_client.post(f"{URL}/qa/examples", body, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]


@pytest.mark.parametrize("ids", [["not-a-uuid"], [], "x"])
def test_a_malformed_removal_is_a_400(alice_client, qa, ids):
    response = alice_client.post(f"{URL}/qa/examples/remove", {"ids": ids}, format="json")

    assert response.status_code == 400
    assert any(field.startswith("ids") for field in response.json()["error"]["fields"])
    assert DatasetVersion.objects.filter(dataset=qa).count() == 1


def test_removing_an_unknown_example_is_a_400_naming_it(alice_client, qa):
    keep = Example.objects.filter(dataset=qa).first()
    response = alice_client.post(
        f"{URL}/qa/examples/remove", {"ids": [str(keep.pk), "6f1c1d5e-8d4b-4c8e-9a53-0b8f2a7c1e10"]}, format="json"
    )

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"ids.1"}
    keep.refresh_from_db()
    assert keep.removed_in is None


def test_from_run_saves_the_run(alice_client, alice, qa):
    run = RunFactory(owner=alice, variables={"q": "hi"}, output="Hello!")

    response = alice_client.post(f"{URL}/qa/examples/from-run", {"run": str(run.pk), "tags": ["prod"]}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["version"]["number"] == 2
    assert body["example"]["variables"] == {"q": "hi"}
    assert body["example"]["expected_output"] == "Hello!"
    assert body["example"]["tags"] == ["prod"]
    assert body["example"]["source_run"] == str(run.pk)
    assert _outputs(alice_client) == ["Paris", "4", "Hello!"]


def test_from_run_with_an_expected_output(alice_client, alice, qa):
    run = RunFactory(owner=alice, output="wrong")

    response = alice_client.post(
        f"{URL}/qa/examples/from-run", {"run": str(run.pk), "expected_output": "right"}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["example"]["expected_output"] == "right"


def test_from_run_refuses_another_projects_and_unfinished_runs(alice_client, alice, bob, qa):
    bobs = RunFactory(owner=bob)
    queued = RunFactory(owner=alice, status=Run.Status.QUEUED)

    for run in (bobs, queued):
        response = alice_client.post(f"{URL}/qa/examples/from-run", {"run": str(run.pk)}, format="json")
        assert response.status_code == 400, response.content
        assert set(response.json()["error"]["fields"]) == {"run"}
    malformed = alice_client.post(f"{URL}/qa/examples/from-run", {"run": "x", "tags": "y"}, format="json")
    assert malformed.status_code == 400
    assert set(malformed.json()["error"]["fields"]) == {"run", "tags"}
    assert Example.objects.filter(dataset=qa).count() == 2


def test_delete(alice_client, alice, qa):
    in_use = dataset_with_examples(alice.personal_project, ROWS, name="used")
    prompt, _ = prompt_with_version(alice.personal_project, name="greet")
    Experiment.objects.create(
        project=alice.personal_project, prompt=prompt, dataset=in_use, dataset_version=in_use.versions.get()
    )

    deleted = alice_client.delete(f"{URL}/qa")
    refused = alice_client.delete(f"{URL}/used")

    assert deleted.status_code == 204
    assert not Dataset.objects.filter(pk=qa.pk).exists()
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "dataset_in_use"
    assert Dataset.objects.filter(pk=in_use.pk).exists()


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("get", "", None),
        ("patch", "", {"description": "bob's now"}),
        ("delete", "", None),
        ("get", "/versions", None),
        ("get", "/examples", None),
        ("post", "/examples", {"examples": [{"expected_output": "bob"}]}),
        ("post", "/examples", {"examples": "invalid"}),
        ("post", "/examples/remove", {"ids": ["6f1c1d5e-8d4b-4c8e-9a53-0b8f2a7c1e10"]}),
        ("post", "/examples/from-run", {"run": "6f1c1d5e-8d4b-4c8e-9a53-0b8f2a7c1e10"}),
        ("get", "/export", None),
    ],
)
def test_bob_gets_404_for_alices_dataset(bob_client, qa, method, path, body):
    for ref in ("qa", str(qa.pk)):
        response = getattr(bob_client, method)(f"{URL}/{ref}{path}", body, format="json")
        assert response.status_code == 404, (ref, response.status_code, response.content)
    qa.refresh_from_db()
    assert (qa.description, qa.latest_version_number) == ("", 1)
    assert bob_client.get(URL).json()["results"] == []


def test_bob_with_a_same_named_dataset_only_sees_his_own(bob_client, bob, qa):
    dataset_with_examples(bob.personal_project, [{"expected_output": "bob's"}], name="qa")

    assert _outputs(bob_client) == ["bob's"]


def _key(user, scopes):
    _, plaintext = account_services.api_key_create(
        project=user.personal_project, created_by=user, name="scoped", scopes=scopes
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


def test_a_read_key_reads_but_does_not_write(alice, qa):
    reader = _key(alice, [Scope.EVALS_READ])

    assert reader.get(f"{URL}/qa/examples").status_code == 200
    for response in (
        reader.post(URL, {"name": "other"}, format="json"),
        reader.post(f"{URL}/qa/examples", {"examples": [{}]}, format="json"),
        reader.delete(f"{URL}/qa"),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "insufficient_scope"
    assert Dataset.objects.filter(project=alice.personal_project).count() == 1


def test_a_key_without_evals_scopes_reads_nothing(alice, qa):
    runs_only = _key(alice, [Scope.RUNS_READ, Scope.PROMPTS_WRITE])

    for response in (runs_only.get(URL), runs_only.get(f"{URL}/qa/export")):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "insufficient_scope"
