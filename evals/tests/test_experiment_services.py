"""Experiments end to end on the real worker against the local test servers: created, run, scored,
summarized; scoring again writes nothing; a lost score message is recovered; cancel."""

import time

import pytest
from django.utils import timezone

from evals import experiment_selectors, experiment_services
from evals.models import Experiment, Score
from evals.recovery import experiments_recover
from evals.tests.conftest import make_dataset
from llmops.errors import Conflict, ValidationFailed
from providers.tests.openai_server import answer, error, slow
from runs.models import Batch, Run
from runs.recovery import recover_once
from runs.tests.worker import drain

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for_experiment(experiment, *, timeout=30.0, until=(Experiment.Status.COMPLETED, Experiment.Status.FAILED)):
    deadline = time.monotonic() + timeout
    while True:
        experiment.refresh_from_db()
        if experiment.status in until:
            return experiment
        if time.monotonic() > deadline:
            raise AssertionError(f"experiment still {experiment.status} after {timeout}s")
        time.sleep(0.05)


def _create(alice, **overrides):
    fields = {
        "project": alice.personal_project,
        "created_by": alice,
        "api_key": None,
        "prompt": "greet",
        "dataset": "greetings",
        "versions": [3, 4],
        "scorers": ["exact_match"],
        "concurrency": 1,
        "name": "v3 vs v4",
    }
    fields.update(overrides)
    return experiment_services.experiment_create(**fields)


def test_two_versions_run_scored_and_summarized(alice, two_versions, openai_server, second_server, worker):
    make_dataset(alice.personal_project)
    # Version 3 (openai_server) answers "yes" to the first example only; version 4 to all but the last.
    openai_server.enqueue(answer("yes"))
    second_server.set_default(answer("yes"))
    second_server.enqueue(*[answer("yes")] * 9, error(400, '{"error": {"message": "refused"}}'))

    experiment = wait_for_experiment(_create(alice))

    assert experiment.status == Experiment.Status.COMPLETED
    summary = experiment.summary
    assert (summary["dataset_version"], summary["example_count"]) == (1, 10)
    base, cand = summary["arms"]
    assert (base["position"], base["ref"], base["version"]) == (0, "3", 3)
    assert (cand["position"], cand["ref"], cand["version"]) == (1, "4", 4)
    assert (base["runs"], base["succeeded"], base["failed"]) == (10, 10, 0)
    assert (cand["runs"], cand["succeeded"], cand["failed"]) == (10, 9, 1)
    assert base["scores"]["exact_match"] == {"mean": 0.1, "median": 0.0, "pass_rate": 0.1, "count": 10, "errors": 0}
    assert cand["scores"]["exact_match"] == {"mean": 1.0, "median": 1.0, "pass_rate": 1.0, "count": 9, "errors": 1}
    # One token per word: "Say hi to nX." is 4 words; answers are 1 ("yes") or 5 words.
    assert base["tokens"] == {"prompt": 40, "completion": 1 + 9 * 5, "total": 86}
    assert cand["tokens"]["completion"] == 9
    assert base["cost"] == "0.00"
    assert base["latency_ms"]["p50"] is not None and base["latency_ms"]["p95"] >= base["latency_ms"]["p50"]
    (comparison,) = summary["comparisons"]
    assert comparison == {
        "baseline": 0,
        "candidate": 1,
        "scorer": "exact_match",
        "better": 8,
        "worse": 0,
        "same": 1,
        "mean_delta": round(8 / 9, 6),
        "p_value": round(2 / 2**8, 6),
        "verdict": "better",
    }
    assert Score.objects.filter(experiment=experiment).count() == 20
    failed = Score.objects.get(experiment=experiment, value__isnull=True)
    assert failed.run.status == Run.Status.FAILED and f"The run {failed.run.pk} failed" in failed.error
    assert failed.passed is None

    rows = experiment_selectors.experiment_example_rows(experiment)
    assert [row["example"]["position"] for row in rows] == list(range(1, 11))
    first, last = rows[0], rows[-1]
    assert first["example"]["variables"] == {"name": "n0"} and first["example"]["expected_output"] == "yes"
    assert [arm["output"] for arm in first["arms"]] == ["yes", "yes"]
    assert first["arms"][0]["scores"]["exact_match"] == {
        "value": 1.0,
        "passed": True,
        "reason": "Equal.",
        "error": "",
    }
    assert last["arms"][1]["status"] == "failed" and last["arms"][1]["scores"]["exact_match"]["value"] is None

    compared = experiment_selectors.experiment_compare(
        experiment=experiment, baseline=0, candidate=1, scorer="exact_match"
    )
    assert [e["position"] for e in compared["better"]] == list(range(2, 10))
    assert compared["better"][0] == {
        "example_id": rows[1]["example"]["id"],
        "position": 2,
        "baseline": 0.0,
        "candidate": 1.0,
    }
    assert [e["position"] for e in compared["same"]] == [1]
    assert compared["worse"] == []
    assert (compared["verdict"], compared["p_value"]) == ("better", round(2 / 2**8, 6))
    with pytest.raises(ValidationFailed) as caught:
        experiment_selectors.experiment_compare(experiment=experiment, baseline=0, candidate=5, scorer="nope")
    assert set(caught.value.fields) == {"candidate", "scorer"}


def test_scoring_again_writes_nothing_new(alice, two_versions, worker):
    make_dataset(alice.personal_project, examples=[("a", "x"), ("b", "y")])
    experiment = wait_for_experiment(_create(alice))
    scores = list(Score.objects.filter(experiment=experiment).values_list("pk", "value"))
    summary = experiment.summary

    assert experiment_services.experiment_score(experiment_id=experiment.pk) is False

    assert list(Score.objects.filter(experiment=experiment).values_list("pk", "value")) == scores
    experiment.refresh_from_db()
    assert experiment.summary == summary


def _lose_the_scoring(experiment):
    """Back to the moment its batches completed and the score message was lost: running, no scores.
    (The receiver runs in whichever process completed the last batch, with REDIS_URL the worker's,
    so the loss is staged after the fact rather than by patching the sender.)"""
    Score.objects.filter(experiment=experiment).delete()
    Experiment.objects.filter(pk=experiment.pk).update(status=Experiment.Status.RUNNING, summary={}, finished_at=None)
    experiment.refresh_from_db()


def test_scoring_half_done_computes_only_the_rest(alice, two_versions, worker):
    make_dataset(alice.personal_project, examples=[("a", "x"), ("b", "y")])
    experiment = wait_for_experiment(_create(alice))
    _lose_the_scoring(experiment)
    assert set(Batch.objects.filter(experiment_arm__experiment=experiment).values_list("status", flat=True)) == {
        Batch.Status.COMPLETED
    }
    arm = experiment.arms.get(position=0)
    example = experiment.dataset_version.dataset.examples.get(position=1)
    kept = Score.objects.create(
        project=alice.personal_project, experiment=experiment, arm=arm, example=example, name="exact_match", value=1
    )

    assert experiment_services.experiment_score(experiment_id=experiment.pk) is True

    experiment.refresh_from_db()
    assert experiment.status == Experiment.Status.COMPLETED
    assert Score.objects.filter(experiment=experiment).count() == 4
    assert Score.objects.get(arm=arm, example=example).pk == kept.pk
    assert experiment.summary["arms"][0]["scores"]["exact_match"]["mean"] == 0.5


def test_recovery_scores_an_experiment_whose_message_was_lost(alice, two_versions, worker):
    make_dataset(alice.personal_project, examples=[("a", "x")])
    experiment = wait_for_experiment(_create(alice))
    _lose_the_scoring(experiment)
    Batch.objects.filter(experiment_arm__experiment=experiment).update(finished_at=timezone.now())
    # Batches finished a moment ago: left alone for a minute (their message may be on its way).
    assert experiments_recover(idle_for=timezone.timedelta(minutes=1)) == 0

    Batch.objects.filter(experiment_arm__experiment=experiment).update(
        finished_at=timezone.now() - timezone.timedelta(minutes=5)
    )
    counts = recover_once()  # the workers' pass, with the step evals registered

    assert counts["experiments"] == 1
    experiment = wait_for_experiment(experiment)
    assert experiment.status == Experiment.Status.COMPLETED
    assert Score.objects.filter(experiment=experiment).count() == 2
    assert experiments_recover(idle_for=timezone.timedelta(0)) == 0


def test_cancel_cancels_the_batches(alice, two_versions, openai_server, second_server, worker):
    make_dataset(alice.personal_project)
    openai_server.set_default(slow(0.5, "late"))
    second_server.set_default(slow(0.5, "late"))
    experiment = _create(alice)

    experiment_services.experiment_cancel(experiment=experiment)

    assert experiment.status == Experiment.Status.CANCELED and experiment.finished_at is not None
    statuses = set(Batch.objects.filter(experiment_arm__experiment=experiment).values_list("status", flat=True))
    assert statuses == {Batch.Status.CANCELED}
    with pytest.raises(Conflict):
        experiment_services.experiment_cancel(experiment=experiment)
    drain(settle=1.0)
    experiment.refresh_from_db()
    assert experiment.status == Experiment.Status.CANCELED
    assert not Score.objects.filter(experiment=experiment).exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"prompt": "nope"}, "prompt"),
        ({"dataset": "nope"}, "dataset"),
        ({"dataset_version": 7}, "dataset_version"),
        ({"versions": []}, "versions"),
        ({"versions": [3, 9]}, "versions.1"),
        ({"versions": [3, "3"]}, "versions.1"),
        ({"versions": [3, "staging"]}, "versions.1"),
        ({"scorers": ["nope"]}, "scorers.0.name"),
        ({"concurrency": 0}, "concurrency"),
        ({"params": {"temperature": 9}}, "params.temperature"),
    ],
)
def test_bad_input_creates_nothing(alice, two_versions, overrides, field):
    make_dataset(alice.personal_project)

    with pytest.raises(ValidationFailed) as caught:
        _create(alice, **overrides)

    assert field in caught.value.fields, caught.value.fields
    assert not Experiment.objects.exists() and not Batch.objects.exists()


def test_an_example_a_version_cannot_render_creates_nothing(alice, two_versions):
    make_dataset(alice.personal_project, examples=[("a", "x")])
    alice.personal_project.datasets.get().examples.update(variables={"nom": "a"})

    with pytest.raises(ValidationFailed) as caught:
        _create(alice)

    assert any(key.startswith("versions.0.examples.1") for key in caught.value.fields), caught.value.fields
    assert not Experiment.objects.exists() and not Batch.objects.exists()


def test_an_empty_dataset_version_is_refused(alice, two_versions):
    make_dataset(alice.personal_project, examples=[])

    with pytest.raises(ValidationFailed) as caught:
        _create(alice)

    assert "dataset_version" in caught.value.fields
