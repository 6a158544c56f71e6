"""POST and GET /api/v1/runs/{id}/scores: a client scores a run of its project (source=api), each bad
field named, another project's run a 404, an unfinished run a 409, and the scopes they need."""

import pytest
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import Scope
from evals import score_services
from evals.models import Score
from llmops.errors import ValidationFailed
from llmops.tests.helpers import assert_error
from runs.models import Run
from runs.tests.factories import RunFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(alice):
    return RunFactory(owner=alice, project=alice.personal_project)


def _scores(run_id):
    return f"/api/v1/runs/{run_id}/scores"


def test_a_client_scores_a_run_and_reads_its_scores(alice_client, alice, run):
    response = alice_client.post(
        _scores(run.pk), {"name": "helpful", "value": 0.75, "reason": "Mostly."}, format="json"
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["run"], body["name"], body["value"], body["reason"]) == (str(run.pk), "helpful", 0.75, "Mostly.")
    assert (body["source"], body["created_by"]) == ("api", "alice")
    score = Score.objects.get()
    assert (score.run, score.project, score.source, score.value) == (run, alice.personal_project, "api", 0.75)
    alice_client.post(_scores(run.pk), {"name": "helpful", "value": 1}, format="json")

    listed = alice_client.get(_scores(run.pk))

    assert listed.status_code == 200
    assert [(s["name"], s["value"], s["reason"]) for s in listed.json()["scores"]] == [
        ("helpful", 1.0, ""),
        ("helpful", 0.75, "Mostly."),
    ]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": "helpful", "value": 1.5}, {"value"}),
        ({"name": "helpful", "value": -0.1}, {"value"}),
        ({"name": "helpful", "value": True}, {"value"}),
        ({"name": "helpful", "value": "0.5"}, {"value"}),
        ({"name": "", "value": 0.5}, {"name"}),
        ({"name": "x" * 101, "value": 0.5}, {"name"}),
        ({"value": 0.5}, {"name"}),
        ({"name": "helpful"}, {"value"}),
        ({"name": "helpful", "value": 0.5, "reason": "x" * 10_001}, {"reason"}),
        ({"name": "helpful", "value": 0.5, "passed": True}, {"passed"}),
    ],
)
def test_a_bad_score_is_a_400_naming_the_field(alice_client, run, body, fields):
    response = alice_client.post(_scores(run.pk), body, format="json")

    assert_error(response, 400, fields=fields)
    assert Score.objects.count() == 0


def test_the_service_checks_what_the_api_does(alice, run):
    with pytest.raises(ValidationFailed) as refused:
        score_services.score_record(
            project=alice.personal_project, run_id=str(run.pk), name=" ", value=float("nan"), created_by=alice
        )
    assert set(refused.value.fields) == {"name", "value"}
    assert Score.objects.count() == 0


def test_another_projects_run_is_404_for_scoring_and_reading(bob_client, run):
    assert_error(bob_client.post(_scores(run.pk), {"name": "x", "value": 1}, format="json"), 404)
    assert_error(bob_client.get(_scores(run.pk)), 404)
    assert_error(bob_client.get(_scores("not-a-uuid")), 404)
    assert Score.objects.count() == 0


def test_an_unfinished_run_cannot_be_scored(alice_client, alice):
    queued = RunFactory(owner=alice, project=alice.personal_project, status=Run.Status.QUEUED)

    response = alice_client.post(_scores(queued.pk), {"name": "x", "value": 1}, format="json")

    assert_error(response, 409, "run_not_finished")
    assert Score.objects.count() == 0


def test_scoring_needs_evals_write_and_reading_evals_read(alice, run):
    _, reader = account_services.api_key_create(
        project=alice.personal_project, created_by=alice, name="reader", scopes=[Scope.EVALS_READ]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {reader}")

    assert_error(client.post(_scores(run.pk), {"name": "x", "value": 1}, format="json"), 403, "insufficient_scope")
    assert client.get(_scores(run.pk)).status_code == 200
