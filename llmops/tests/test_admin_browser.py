"""The admin in a real browser (llmops/tests/browser.py): what staff see, step by step, with a
screenshot of each step in $ADMIN_SCREENSHOTS/<test name>/."""

from datetime import date
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts import project_services
from accounts.models import Role
from accounts.tests.factories import UserFactory
from billing.models import Budget, CostLog, ModelPrice
from llmops.money import money_str
from prompts import services as prompt_services
from prompts.tests.factories import prompt_with_version
from providers.tests.openai_server import answer
from runs.models import Run
from runs.tests.factories import RunFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_staff_see_a_prompt_its_versions_a_diff_and_a_project_with_its_members(admin_browser):
    alice = UserFactory(username="alice")
    prompt, _ = prompt_with_version(alice, name="greet")
    prompt_services.prompt_version_create(
        prompt=prompt,
        created_by=alice,
        messages=[
            {"role": "system", "content": "You are brief."},
            {"role": "user", "content": "Say hello to {{ name }} in a {{ tone }} way."},
        ],
        variables={"name": {"type": "string"}, "tone": {"type": "string", "default": "warm"}},
    )
    prompt_services.label_move(prompt=prompt, label="production", version_number=1, moved_by=alice)
    team = project_services.project_create(name="Search team", slug="search", created_by=alice)
    project_services.member_add(project=team, user=UserFactory(username="bob"), role=Role.EDITOR, acting_role=None)
    Budget.objects.create(project=team, amount=Decimal("25"), window=Budget.Window.MONTH)
    page = admin_browser.page

    assert "Site administration" in page.content()
    admin_browser.shot("logged-in")

    admin_browser.go("/admin/prompts/prompt/")
    admin_browser.follow("text=greet")
    admin_browser.shot("prompt-with-versions")
    assert "in a {{ tone }} way." in admin_browser.text()

    admin_browser.follow("text=compare with production")
    compare = admin_browser.text()
    assert "v1" in compare and "v2" in compare
    assert "Side by side" in compare and "Unified" in compare
    assert page.locator(".diff-added, .added, ins, [class*=added]").count() > 0  # the new lines, highlighted
    admin_browser.shot("compare-with-production")

    admin_browser.go("/admin/accounts/project/")
    admin_browser.follow("text=Search team")
    content = admin_browser.text()
    assert "bob" in content and "25.00" in content
    admin_browser.shot("project-members-budget")

    assert len(admin_browser.taken) == 4 and all(path.stat().st_size > 10_000 for path in admin_browser.taken)


def test_someone_not_staff_is_sent_to_the_login_page(chromium, live_server, django_user_model):
    django_user_model.objects.create_user(username="member", password="a-member-password")
    context = chromium.new_context()
    page = context.new_page()
    try:
        page.goto(live_server.url + "/admin/login/?next=/admin/prompts/prompt/")
        page.fill("#id_username", "member")
        page.fill("#id_password", "a-member-password")
        page.click("input[type=submit]")

        assert "/admin/login/" in page.url
        assert "not authorized" in page.content() or "correct username and password" in page.content()
    finally:
        context.close()


def test_the_workbench_from_a_new_prompt_to_production_a_run_and_its_cost(
    admin_browser, provider_factory, openai_server, worker
):
    """The issue's end-to-end flow, as staff click it: each step leaves a screenshot."""
    openai_server.set_models(["smollm2"])
    provider_factory(name="local")  # `local` answers from the test's OpenAI-compatible server
    page = admin_browser.page
    project = admin_browser.user.personal_project

    # A new prompt, then its first version from the blank editor.
    admin_browser.go("/admin/prompts/prompt/add/")
    page.fill("#id_project", str(project.pk))
    page.fill("#id_name", "welcome")
    admin_browser.follow("input[name=_continue]")
    assert "The first version" in admin_browser.text()
    page.fill("#id_template", "Say hello.")
    page.fill("#id_commit_message", "First cut")
    admin_browser.follow("#save-version")
    assert "Saved as v1." in admin_browser.text()
    admin_browser.shot("prompt-created-with-v1")

    # v2 through the editor: chat messages, a variable used before it is declared.
    page.check("input[name=kind][value=chat]")  # the template becomes the first user message
    page.click("#add-message")
    page.select_option("select[name=messages-1-role]", "user")
    page.fill("textarea[name=messages-1-content]", "Greet {{ name }} warmly.")
    page.select_option("select[name=messages-0-role]", "system")
    page.fill("textarea[name=messages-0-content]", "You are a concierge. Say hello.")
    page.fill("#id_max_tokens", "32")
    page.fill("#id_commit_message", "Chat, greeting someone by name")
    admin_browser.follow("#save-version")
    assert "Uses undeclared variables: name. Declare them in `variables`." in admin_browser.text()
    error = page.locator(".message-row").nth(1).locator(".errorlist")
    assert "undeclared variables: name" in error.inner_text()  # at the message that uses it
    admin_browser.shot("undeclared-variable-field-error")

    page.click("#add-variable")
    page.fill("input[name=variables-0-name]", "name")
    page.fill("input[name=variables-0-description]", "Who to greet")
    admin_browser.follow("#save-version")
    assert "Saved as v2." in admin_browser.text()
    admin_browser.shot("prompt-with-v2-editor")

    # The diff of v1 and v2.
    admin_browser.follow("text=Compare with v1")
    assert "Side by side" in admin_browser.text() and "Greet {{ name }} warmly." in admin_browser.text()
    admin_browser.shot("diff-v1-v2")

    # production to v1, then to v2 through the confirmation page with its diff.
    for number in (1, 2):
        admin_browser.go(f"/admin/prompts/prompt/{project.prompts.get().pk}/change/")
        page.fill("#label-move-name", "production")
        page.select_option("#label-move-version", str(number))
        admin_browser.follow("#label-move-review")
        if number == 2:
            assert "Move production from v1 to v2?" in admin_browser.text()
            assert page.locator("table.diff .diff-added, table.diff .diff-changed").count() > 0
            admin_browser.shot("label-move-confirmation")
        admin_browser.follow("#label-move-submit")
    assert "Production moved from v1 to v2." in admin_browser.text()
    assert page.locator(".label-row[data-label=production] .label-version").inner_text() == "v2"
    assert page.locator("#label-history tbody tr").count() == 2
    admin_browser.shot("labels-and-history")

    # Run v2 from its "Run this version" form; the worker asks the test server.
    ModelPrice.objects.create(
        provider="local",
        model="smollm2",
        input_per_mtok=Decimal("150"),
        output_per_mtok=Decimal("600"),
        effective_from=date(2020, 1, 1),
    )
    openai_server.set_default(answer("Hello Ada, welcome!"))
    page.locator(".try-link").first.click()
    page.wait_for_selector("#try-form")
    assert page.input_value("#id_variables-name") == ""
    page.fill("#id_variables-name", "Ada")
    admin_browser.shot("run-this-version-form")
    admin_browser.follow("#try-submit")
    page.wait_for_selector("#try-output", timeout=30_000)
    assert page.inner_text("#try-output").strip() == "Hello Ada, welcome!"
    run = Run.objects.get(project=project)
    assert run.status == Run.Status.SUCCEEDED and run.prompt_version.number == 2
    assert run.rendered_input[1] == {"role": "user", "content": "Greet Ada warmly."}
    cost = money_str(CostLog.objects.get(run=run).total_cost)
    assert Decimal(cost) > 0
    assert cost in page.inner_text("#try-cost") and str(run.total_tokens) in page.inner_text("#try-tokens")
    admin_browser.shot("run-result")

    # The cost dashboard has the run's cost in today's bar and in its tables.
    admin_browser.go(f"/admin/billing/costlog/dashboard/?project={project.slug}")
    today = timezone.now().date().isoformat()
    bar = page.locator(f"#chart-spend rect.bar[data-day='{today}']")
    assert bar.get_attribute("data-cost") == cost and bar.get_attribute("data-tokens") == str(run.total_tokens)
    prompt_row = page.locator("#by-prompt tr.group-row[data-label='welcome']")
    assert prompt_row.get_attribute("data-cost") == cost
    assert page.locator("#by-model tr.group-row").first.get_attribute("data-cost") == cost
    assert cost in page.inner_text("#total-cost")
    admin_browser.shot("cost-dashboard")


def test_runs_as_conversations_keys_from_the_project_page_and_a_label_rolled_back(admin_browser):
    """The rest of the console: filtered runs and a run read as a conversation; a key created from
    the project's page (shown once), then rotated; production rolled back in one click."""
    staff = admin_browser.user
    project = staff.personal_project
    page = admin_browser.page
    prompt, v1 = prompt_with_version(staff, name="support")
    prompt_services.prompt_version_create(prompt=prompt, created_by=staff, template="Answer {{ name }} kindly.")
    for number in (1, 2):
        prompt_services.label_move(prompt=prompt, label="production", version_number=number, moved_by=staff)
    RunFactory(
        owner=staff,
        prompt_version=v1,
        rendered_input=[
            {"role": "system", "content": "You answer in one line. <b>not bold</b>"},
            {"role": "user", "content": "Where is my parcel?"},
        ],
        output="It left the depot this morning.",
    )
    RunFactory(owner=staff, prompt_version=v1, status=Run.Status.FAILED, output="", error_code="rate_limited")

    admin_browser.go(f"/admin/runs/run/?status__exact=succeeded&project={project.pk}")
    assert page.locator("#result_list tbody tr").count() == 1
    admin_browser.shot("runs-filtered")
    page.locator("#result_list tbody tr a").first.click()
    page.wait_for_load_state()
    text = admin_browser.text()
    assert "Where is my parcel?" in text and "It left the depot this morning." in text
    assert "<b>not bold</b>" in text  # shown as typed, never as markup
    admin_browser.shot("run-as-a-conversation")

    admin_browser.go(f"/admin/accounts/project/{project.pk}/change/")
    admin_browser.follow("#add-api-key")
    page.fill("#id_name", "ci-deploys")
    admin_browser.follow("input[name=_save]")
    plaintext = page.inner_text("#api-key-plaintext").strip()
    assert plaintext.startswith("llm") or len(plaintext) > 20
    admin_browser.shot("key-created-shown-once")
    admin_browser.follow("#back-to-project")
    assert plaintext not in page.content()
    row = page.locator(".api-key-row", has_text="ci-deploys")
    assert "active" in row.locator(".key-status").inner_text().lower()
    admin_browser.shot("project-keys-budgets-members")
    with page.expect_navigation():
        row.locator(".key-rotate").click()
    admin_browser.follow("#confirm-rotate")
    rotated = page.inner_text(".api-key-plaintext").strip()
    assert rotated and rotated != plaintext
    admin_browser.shot("key-rotated")

    admin_browser.go(f"/admin/prompts/prompt/{prompt.pk}/change/")
    admin_browser.follow("input.rollback-button")
    assert "Production rolled back from v2 to v1." in admin_browser.text()
    assert page.locator(".label-row[data-label=production] .label-version").inner_text() == "v1"
    admin_browser.shot("production-rolled-back")
