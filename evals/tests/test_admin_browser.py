"""The evaluation admin in a real browser (llmops/tests/browser.py): a dataset's page, and an
experiment's result page with its comparison table, chart and examples side by side; screenshots in
$ADMIN_SCREENSHOTS/<test name>/."""

import pytest

from evals.tests.test_experiment_admin import experiment  # noqa: F401  (the fixture: v3 vs v4, run on the worker)

pytestmark = pytest.mark.django_db(transaction=True)


def test_staff_read_an_experiment_and_its_dataset(admin_browser, experiment):  # noqa: F811
    page = admin_browser.page

    admin_browser.go("/admin/evals/experiment/")
    assert "yes vs no" in admin_browser.text()
    admin_browser.shot("experiments")

    admin_browser.follow("text=yes vs no")
    text = admin_browser.text()
    assert "no significant difference" in text
    assert page.locator("#experiment-arms tr.experiment-arm").count() == 2
    assert page.locator("#score-history rect.bar").count() == 2
    assert page.locator("#experiment-examples tr.experiment-example").count() == 3
    assert '"name": "cy"' in text  # the variables as JSON
    admin_browser.shot("experiment-result")

    admin_browser.go("/admin/evals/dataset/")
    admin_browser.follow("text=greetings")
    assert "yes" in admin_browser.text()
    admin_browser.shot("dataset")
