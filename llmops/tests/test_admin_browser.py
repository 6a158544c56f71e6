"""The admin in a real browser (llmops/tests/browser.py): what staff see, step by step, with a
screenshot of each step in $ADMIN_SCREENSHOTS/<test name>/."""

from decimal import Decimal

import pytest

from accounts import project_services
from accounts.models import Role
from accounts.tests.factories import UserFactory
from billing.models import Budget
from prompts import services as prompt_services
from prompts.tests.factories import prompt_with_version

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
