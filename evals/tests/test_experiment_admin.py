"""The experiments' admin: the list, and the result page (comparison table, the examples side by
side, the chart of scores per version over time) of an experiment run end to end on the worker."""

import re

import pytest

from evals.models import Experiment
from evals.tests.conftest import make_dataset
from evals.tests.test_experiment_services import _create, wait_for_experiment
from providers.tests.openai_server import answer

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/evals/experiment/"


@pytest.fixture
def experiment(alice, two_versions, openai_server, second_server, worker):
    make_dataset(alice.personal_project, examples=[("ada", "yes"), ("bob", "yes"), ("cy", "no")])
    # Version 3 answers "yes" to all three (2 of 3 right); version 4 answers "no" to all (1 of 3).
    openai_server.set_default(answer("yes"))
    second_server.set_default(answer("no"))
    return wait_for_experiment(_create(alice, name="yes vs no"))


def test_the_list_shows_the_experiment_and_its_versions(admin_client, experiment):
    html = admin_client.get(CHANGELIST).content.decode()

    assert "yes vs no" in html
    assert "greetings v1" in html
    assert "v3, v4" in html
    assert "Completed" in html


def test_the_result_page_compares_the_versions(admin_client, experiment):
    assert experiment.status == Experiment.Status.COMPLETED
    page = admin_client.get(f"{CHANGELIST}{experiment.pk}/change/")
    html = page.content.decode()

    assert page.status_code == 200
    arms = re.findall(r'<tr class="experiment-arm" data-version="(\d+)">(.*?)</tr>', html, re.S)
    assert [version for version, _ in arms] == ["3", "4"]
    assert "0.667 / 1.000 / 66.7 %" in arms[0][1]  # mean / median / pass rate of exact_match
    assert "0.333 / 0.000 / 33.3 %" in arms[1][1]
    # Two examples worse, one the same: too few to tell apart from noise.
    comparison = re.search(r'<tr class="comparison verdict-([a-z-]+)">(.*?)</tr>', html, re.S)
    assert comparison is not None
    assert comparison.group(1) == "no-significant-difference"
    assert "v4 vs v3" in comparison.group(2)
    examples = re.findall(r'<tr class="experiment-example" data-position="(\d+)">(.*?)</tr>', html, re.S)
    assert [position for position, _ in examples] == ["1", "2", "3"]
    assert examples[2][1].count("exact_match: 0.000") == 1 and "exact_match: 1.000" in examples[2][1]


def test_the_chart_shows_each_version_of_each_experiment_over_time(alice, admin_client, experiment, worker):
    later = wait_for_experiment(_create(alice, name="again"))
    html = admin_client.get(f"{CHANGELIST}{later.pk}/change/").content.decode()

    bars = re.findall(r'<rect class="bar"[^>]*data-version="(\d+)" data-experiment="([^"]+)" data-mean="([^"]+)"', html)
    assert [(version, experiment_id, mean) for version, experiment_id, mean in bars] == [
        ("3", str(experiment.pk), "0.6667"),
        ("4", str(experiment.pk), "0.3333"),
        ("3", str(later.pk), "0.6667"),
        ("4", str(later.pk), "0.3333"),
    ]


def test_an_experiment_is_read_only_in_the_admin(admin_client, experiment):
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    html = admin_client.get(f"{CHANGELIST}{experiment.pk}/change/").content.decode()
    assert 'name="_save"' not in html
