"""`manage.py evaluate`: each exit code, against the local test servers, on the real worker."""

import pytest
from django.core.management import CommandError, call_command

from evals.management.commands import evaluate
from evals.models import Experiment
from evals.tests.conftest import make_dataset
from providers.tests.openai_server import answer, slow

pytestmark = pytest.mark.django_db(transaction=True)


def _evaluate(*args, **options):
    options = {
        "owner": "alice",
        "dataset": "greetings",
        "versions": "3,4",
        "no_progress": True,
        "poll": 0.05,
        **options,
    }
    call_command("evaluate", "greet", *args, **options)


@pytest.fixture
def dataset(alice, two_versions):
    return make_dataset(alice.personal_project)


def test_a_better_version_passes_and_prints_the_table(dataset, second_server, worker, capsys):
    second_server.set_default(answer("yes"))  # version 4 right on all 10 examples, version 3 on none

    _evaluate(fail_under=0.9, scorer=['{"name": "exact_match", "threshold": 1}'])

    out = capsys.readouterr().out
    experiment = Experiment.objects.get()
    assert experiment.status == Experiment.Status.COMPLETED
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("version"))
    assert header.split()[:5] == ["version", "ok/runs", "exact_match", "mean", "median"]
    assert "tokens" in header and "p95 ms" in header
    v3 = next(line for line in lines if line.startswith("v3 *")).split()
    v4 = next(line for line in lines if line.startswith("v4 ")).split()
    assert v3[2:6] == ["10/10", "0.000", "0.000", "0%"]
    assert v4[1:5] == ["10/10", "1.000", "1.000", "100%"]
    assert "$0.00" in v4
    assert "v4 vs v3 on exact_match: 10 better, 0 worse, 0 same; mean delta +1.000; p = 0.001953: better" in out
    assert "Passed." in out


def test_below_fail_under_exits_1(dataset, second_server, worker):
    second_server.set_default(answer("yes"))
    second_server.enqueue(answer("no"), answer("no"))  # version 4: 8 of 10

    with pytest.raises(CommandError) as caught:
        _evaluate(fail_under=0.9, concurrency=1)

    assert caught.value.returncode == evaluate.EXIT_FAIL_UNDER == 1
    assert "v4's mean exact_match is 0.800, under 0.9" in str(caught.value)


def test_significantly_worse_than_the_baseline_exits_2(dataset, openai_server, second_server, worker, capsys):
    openai_server.set_default(answer("yes"))  # version 3 right on all
    second_server.set_default(answer("no"))  # version 4 on none

    with pytest.raises(CommandError) as caught:
        _evaluate(fail_under=0.5)

    assert caught.value.returncode == evaluate.EXIT_WORSE == 2
    assert "v4 is significantly worse than v3 on exact_match" in str(caught.value)
    assert "under 0.5" in str(caught.value)  # both findings are told; the worse one sets the code
    assert ": worse" in capsys.readouterr().out


def test_not_finished_in_time_exits_3_and_cancels(dataset, openai_server, second_server, worker, monkeypatch):
    # The command's own worker would stop holding messages it prefetched; in a process of its own they
    # go with it, but on the suite's shared in-process broker they would stay unfinished and hang every
    # later drain(). The test's worker (the same code) executes instead.
    monkeypatch.setattr(evaluate.Command, "_start_worker", lambda self, threads: None)
    openai_server.set_default(slow(1.0, "late"))
    second_server.set_default(slow(1.0, "late"))

    with pytest.raises(CommandError) as caught:
        _evaluate(timeout=0.3, concurrency=1)

    assert caught.value.returncode == evaluate.EXIT_UNFINISHED == 3
    assert "did not finish within 0.3 s" in str(caught.value)
    assert Experiment.objects.get().status == Experiment.Status.CANCELED


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dataset": "nope"}, "dataset: No such dataset."),
        ({"versions": "3,9"}, "versions.1"),
        ({"scorer": ["nope"]}, "scorers.0.name"),
        ({"scorer": ["{not json"]}, "invalid JSON"),
    ],
)
def test_invalid_input_exits_4_and_creates_nothing(dataset, options, message):
    with pytest.raises(CommandError) as caught:
        _evaluate(**options)

    assert caught.value.returncode == evaluate.EXIT_INVALID == 4
    assert message in str(caught.value)
    assert not Experiment.objects.exists()
