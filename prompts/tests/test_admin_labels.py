"""Labels on the prompt's admin page: a move goes through a confirmation page showing the diff; a
protected label needs the admin role of the project; one click rolls a label back; the history shows."""

import html

import pytest
from django.contrib.auth.models import Permission

from accounts import project_services
from accounts.models import Role
from accounts.tests.factories import UserFactory
from prompts import services
from prompts.models import LabelMove, PromptLabel
from prompts.tests.factories import prompt_with_version


@pytest.fixture
def prompt(alice):
    prompt, _ = prompt_with_version(alice, template="Hello {{ name }}.", variables={"name": {"type": "string"}})
    services.prompt_version_create(prompt=prompt, created_by=alice, template="Hi there, {{ name }}!")
    services.label_move(prompt=prompt, label="production", version_number=1, moved_by=alice)
    return prompt


def _move_url(prompt, **query):
    url = f"/admin/prompts/prompt/{prompt.pk}/labels/move/"
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def _production(prompt):
    return PromptLabel.objects.get(prompt=prompt, name="production").version.number


def test_the_confirmation_shows_the_diff_and_moves_nothing_until_confirmed(admin_client, prompt):
    response = admin_client.get(_move_url(prompt, label="production", version=2))

    page = response.content.decode()
    assert response.status_code == 200
    assert "Move <strong>production</strong> from v1 to v2?" in page
    assert "protected label" in page
    assert 'class="diff side-by-side"' in page and "Hi there, {{ name }}!" in page
    assert _production(prompt) == 1


def test_confirming_moves_the_label_and_records_who_moved_it(admin_client, prompt):
    response = admin_client.post(
        _move_url(prompt, label="production", version=2), {"label": "production", "version": "2"}
    )

    assert response.status_code == 302 and response["Location"].endswith("/change/#prompt-labels")
    assert _production(prompt) == 2
    move = LabelMove.objects.filter(prompt=prompt).first()
    assert (move.from_version.number, move.to_version.number, move.moved_by.username) == (1, 2, "admin")
    page = admin_client.get(response["Location"]).content.decode()
    assert "Production moved from v1 to v2." in page
    assert 'id="label-history"' in page and "<td>admin</td>" in page


def test_a_new_label_is_confirmed_too(admin_client, prompt):
    page = admin_client.get(_move_url(prompt, label="staging", version=2)).content.decode()
    admin_client.post(_move_url(prompt), {"label": "staging", "version": "2"})

    assert "<strong>staging</strong> is new on this prompt: it will point at v2." in page
    assert PromptLabel.objects.get(prompt=prompt, name="staging").version.number == 2


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"label": "production", "version": "9"}, "This prompt has no version 9."),
        ({"label": "latest", "version": "1"}, "'latest' always means the highest version"),
        ({"label": "bad label!", "version": "1"}, "label: Enter a valid"),
        ({"label": "production", "version": "x"}, "version: Enter a whole number."),
        ({}, "label: This field is required."),
    ],
)
def test_a_bad_move_is_a_400_page_saying_why(admin_client, prompt, query, message):
    response = admin_client.get(_move_url(prompt, **query))

    assert response.status_code == 400
    assert message in html.unescape(response.content.decode())


def _staff(prompt, role):
    staff = UserFactory(username=f"staff-{role or 'none'}", is_staff=True, is_superuser=False)
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="prompts"))
    if role:
        project_services.member_add(project=prompt.project, user=staff, role=role, acting_role=None)
    return staff


@pytest.mark.parametrize(
    ("role", "label", "status", "message"),
    [
        (Role.EDITOR, "production", 403, "needs admin"),
        (None, "staging", 403, "not a member"),
        (Role.VIEWER, "staging", 403, "needs editor"),
        (Role.EDITOR, "staging", 302, None),
        (Role.ADMIN, "production", 302, None),
    ],
)
def test_moving_a_label_needs_the_role_the_api_needs(client, prompt, role, label, status, message):
    client.force_login(_staff(prompt, role))

    response = client.post(_move_url(prompt), {"label": label, "version": "2"})

    assert response.status_code == status
    moved = PromptLabel.objects.filter(prompt=prompt, name=label, version__number=2).exists()
    assert moved == (status == 302)
    if message:
        assert message in response.content.decode()


def test_one_click_rolls_a_label_back_to_where_it_was(admin_client, prompt):
    services.label_move(prompt=prompt, label="production", version_number=2, moved_by=None)
    page = admin_client.get(f"/admin/prompts/prompt/{prompt.pk}/change/").content.decode()
    assert 'value="Roll back to v1"' in page

    response = admin_client.post(f"/admin/prompts/prompt/{prompt.pk}/labels/rollback/", {"label": "production"})

    assert response.status_code == 302
    assert _production(prompt) == 1
    assert "Production rolled back from v2 to v1." in admin_client.get(response["Location"]).content.decode()


def test_a_roll_back_is_refused_without_the_role_and_without_an_earlier_version(client, admin_client, prompt):
    services.label_move(prompt=prompt, label="production", version_number=2, moved_by=None)
    client.force_login(_staff(prompt, Role.EDITOR))

    refused = client.post(f"/admin/prompts/prompt/{prompt.pk}/labels/rollback/", {"label": "production"}, follow=True)
    nothing = admin_client.post(
        f"/admin/prompts/prompt/{prompt.pk}/labels/rollback/", {"label": "staging"}, follow=True
    )
    by_get = admin_client.get(f"/admin/prompts/prompt/{prompt.pk}/labels/rollback/")

    assert "needs admin" in refused.content.decode()
    assert "has no earlier version to roll back to" in nothing.content.decode()
    assert by_get.status_code == 405
    assert _production(prompt) == 2


def test_the_label_admin_form_checks_the_role_of_a_protected_label(client, prompt):
    client.force_login(_staff(prompt, Role.EDITOR))
    label = PromptLabel.objects.get(prompt=prompt, name="production")
    v2 = prompt.versions.get(number=2)

    response = client.post(f"/admin/prompts/promptlabel/{label.pk}/change/", {"version": str(v2.pk)})

    assert response.status_code == 200
    assert "needs admin" in response.content.decode()
    assert _production(prompt) == 1
