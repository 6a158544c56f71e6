""" "Run this version" in the admin: the form is built from the version's variables, a good submission
creates the run through run_create and its result page shows what the worker got from the real test
server, bad values and the service's refusals (validation, budget) are shown on the form with nothing
written, and only superusers and the project's editors may run its prompts."""

import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from accounts.models import Role
from accounts.tests.factories import MembershipFactory, UserFactory
from billing.models import ModelPrice
from billing.tests.factories import BudgetFactory
from llmops.money import money_str
from prompts.tests.factories import prompt_with_version
from providers.tests.openai_server import answer
from runs.models import Run
from runs.tests.factories import RunFactory
from runs.tests.worker import wait_for_run

VARIABLES = {
    "name": {"type": "string", "description": "Who to <b>greet</b>."},
    "times": {"type": "integer", "default": 2},
    "ratio": {"type": "number", "default": 0.5},
    "shout": {"type": "boolean", "default": True},
    "tags": {"type": "array", "default": ["a"]},
    "extra": {"type": "object", "required": False},
}
TEMPLATE = "Greet {{ name }} {{ times }} times{% if shout %}!{% endif %} ({{ tags|join(',') }}, {{ ratio }})"
GOOD = {
    "variables-name": "Ada",
    "variables-times": "3",
    "variables-ratio": "0.25",
    "variables-shout": "on",
    "variables-tags": '["x", "y"]',
    "variables-extra": "",
    "params-max_tokens": "16",
    "params-temperature": "",
}


@pytest.fixture
def version(alice, provider_factory):
    provider_factory(name="testllm", timeout=2.0)
    return prompt_with_version(alice, template=TEMPLATE, variables=VARIABLES, model="testllm/test-model")[1]


def _url(version) -> str:
    return reverse("admin:runs_run_try", args=[version.pk])


def _field_errors(response) -> dict[str, list[str]]:
    return dict(response.context["variables_form"].form.errors)


@pytest.mark.django_db
def test_the_form_has_typed_inputs_with_defaults(admin_client, version):
    response = admin_client.get(_url(version))
    page = response.content.decode()

    assert response.status_code == 200
    assert re.search(r'<textarea name="variables-name"[^>]*required[^>]*id="id_variables-name"', page)
    assert '<label class="required" for="id_variables-name">name:</label>' in page
    assert "Who to &lt;b&gt;greet&lt;/b&gt;. Type: string." in page
    assert f"of the project {version.prompt.project.slug}, on testllm/test-model" in page
    assert re.search(r'<input type="number" name="variables-times" value="2"', page)
    assert re.search(r'<input type="number" name="variables-ratio" value="0.5" step="any"', page)
    assert re.search(r'<input type="checkbox" name="variables-shout"[^>]*checked', page)
    assert re.search(r'<textarea name="variables-tags"[^>]*>\s*\[&quot;a&quot;\]</textarea>', page)
    assert re.search(r'<textarea name="variables-extra"[^>]*>\s*</textarea>', page)
    # The version's own max_tokens is the override's starting value.
    assert re.search(r'<input type="number" name="params-max_tokens" value="32"', page)


@pytest.mark.django_db(transaction=True)
def test_a_good_submission_runs_and_the_result_page_shows_the_output(
    admin_client, admin_user, alice, version, openai_server, worker
):
    ModelPrice.objects.create(
        provider="testllm",
        model="test-model",
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
        effective_from="2020-01-01",
    )
    openai_server.enqueue(answer("Hello <Ada>!"))

    response = admin_client.post(_url(version), GOOD)

    run = Run.objects.get()
    result_url = reverse("admin:runs_run_try_result", args=[version.pk, run.pk])
    assert response.status_code == 302
    assert response["Location"] == result_url
    assert (run.project, run.created_by, run.api_key) == (alice.personal_project, admin_user, None)
    assert run.variables == {"name": "Ada", "times": 3, "ratio": 0.25, "shout": True, "tags": ["x", "y"]}
    assert run.params["max_tokens"] == 16
    assert run.rendered_input == [{"role": "user", "content": "Greet Ada 3 times! (x,y, 0.25)"}]

    run = wait_for_run(run.pk)
    page = admin_client.get(result_url).content.decode()

    assert run.status == Run.Status.SUCCEEDED
    assert '<span id="try-status" class="run-status run-status-succeeded">succeeded</span>' in page
    assert '<pre class="run-message-content" id="try-output">Hello &lt;Ada&gt;!</pre>' in page
    tokens = f"{run.total_tokens} ({run.prompt_tokens} prompt + {run.completion_tokens} completion)"
    assert f'<td id="try-tokens">{tokens}</td>' in page
    assert f'<td id="try-cost">{money_str(run.cost_log.total_cost)}</td>' in page
    assert f'<td id="try-latency">{run.latency_ms} ms</td>' in page
    assert f'href="{reverse("admin:runs_run_change", args=[run.pk])}" id="try-run-link"' in page
    assert 'http-equiv="refresh"' not in page
    assert openai_server.chat_requests()[0].body["max_tokens"] == 16


@pytest.mark.django_db
def test_the_result_page_reloads_itself_until_the_run_finished(admin_client, alice, version):
    run = RunFactory(owner=alice, prompt_version=version, status=Run.Status.QUEUED, output="")

    page = admin_client.get(reverse("admin:runs_run_try_result", args=[version.pk, run.pk])).content.decode()

    assert '<meta http-equiv="refresh" content="1">' in page
    assert 'id="try-status" class="run-status run-status-queued">queued<' in page
    assert 'id="try-output"' not in page
    assert 'id="try-run-link"' in page


@pytest.mark.django_db
def test_a_run_of_another_version_is_not_found_on_its_result_page(admin_client, alice, version):
    other = RunFactory(owner=alice)

    response = admin_client.get(reverse("admin:runs_run_try_result", args=[version.pk, other.pk]))

    assert response.status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"variables-times": "three"}, "times", "Enter a whole number."),
        ({"variables-ratio": "lots"}, "ratio", "Enter a number."),
        ({"variables-tags": "[1,"}, "tags", "Enter a valid JSON."),
        ({"variables-name": ""}, "name", "This field is required."),
        # Valid JSON of the wrong type: the rendering service's own message, at the variable.
        ({"variables-tags": '{"a": 1}'}, "tags", "Expected array, got object."),
    ],
)
def test_bad_values_are_field_errors_and_create_nothing(admin_client, version, changes, field, message):
    response = admin_client.post(_url(version), {**GOOD, **changes})

    assert response.status_code == 200
    assert _field_errors(response) == {field: [message]}
    assert message in response.content.decode()
    assert Run.objects.count() == 0


@pytest.mark.django_db
def test_a_parameter_out_of_range_is_the_service_s_error_at_its_input(admin_client, version):
    response = admin_client.post(_url(version), {**GOOD, "params-temperature": "9"})

    assert response.context["params_form"].form.errors == {"temperature": ["Must be between 0 and 2."]}
    assert "Invalid model parameters." in response.content.decode()
    assert Run.objects.count() == 0


@pytest.mark.django_db
def test_a_budget_that_refuses_shows_its_402_message_and_writes_no_run(admin_client, alice, version):
    ModelPrice.objects.create(
        provider="testllm",
        model="test-model",
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
        effective_from="2020-01-01",
    )
    budget = BudgetFactory(owner=alice, amount=Decimal("0"))

    response = admin_client.post(_url(version), GOOD)
    page = response.content.decode()

    assert response.status_code == 200
    assert re.search(r'<ul class="errorlist nonfield" id="try-errors"><li>Budget exceeded: this run may cost', page)
    assert f"budget {budget.pk} has left" in page
    assert Run.objects.count() == 0


@pytest.fixture
def staff(django_user_model):
    """A staff user who may view runs, and is a member of no project but their own."""
    user = UserFactory(username="staffer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_run"))
    return user


@pytest.mark.django_db
def test_staff_outside_the_project_are_refused(client, staff, version):
    client.force_login(staff)

    shown = client.get(_url(version))
    posted = client.post(_url(version), GOOD)

    for response in (shown, posted):
        assert response.status_code == 403
        assert f"You are not a member of the project {version.prompt.project.slug}" in response.content.decode()
        assert 'id="try-form"' not in response.content.decode()
    assert Run.objects.count() == 0


@pytest.mark.django_db
def test_a_viewer_is_refused_and_an_editor_may_run(client, staff, version):
    membership = MembershipFactory(project=version.prompt.project, user=staff, role=Role.VIEWER)
    client.force_login(staff)

    refused = client.post(_url(version), GOOD)
    membership.role = Role.EDITOR
    membership.save()
    allowed = client.get(_url(version))

    assert refused.status_code == 403
    assert "is viewer: running its prompts needs editor or above" in refused.content.decode()
    assert Run.objects.count() == 0
    assert allowed.status_code == 200
    assert 'id="try-form"' in allowed.content.decode()


@pytest.mark.django_db
def test_staff_without_the_runs_permission_are_refused(client, version):
    user = UserFactory(username="no-perms", is_staff=True)
    MembershipFactory(project=version.prompt.project, user=user, role=Role.OWNER)
    client.force_login(user)

    response = client.get(_url(version))

    assert response.status_code == 403
    assert "You do not have permission to view runs." in response.content.decode()


@pytest.mark.django_db
def test_anonymous_users_are_sent_to_the_login_page(client, alice, version):
    run = RunFactory(owner=alice, prompt_version=version)

    pages = [_url(version), reverse("admin:runs_run_try_result", args=[version.pk, run.pk])]
    responses = [client.get(page) for page in pages] + [client.post(_url(version), GOOD)]

    for response in responses:
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    assert Run.objects.count() == 1


@pytest.mark.django_db
def test_an_unknown_version_is_not_found(admin_client):
    response = admin_client.get(reverse("admin:runs_run_try", args=["00000000-0000-0000-0000-000000000000"]))

    assert response.status_code == 404
