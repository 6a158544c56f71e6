"""A key's change page (name, expiry, scopes, limits) follows the rule of creating, rotating and revoking
keys there: a staff user who is not a superuser needs the admin role in the key's project. A refusal
is shown on the form and changes nothing; scopes_clean still validates the scopes."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from accounts import project_services, services
from accounts.models import APIKey, Role
from accounts.tests.factories import UserFactory

pytestmark = pytest.mark.django_db

# The change page's fields as a browser submits them: the key renamed, its scopes and limits changed.
EDIT = {
    "name": "renamed",
    "expires_at_0": "",
    "expires_at_1": "",
    "scopes": ["runs:read", "prompts:read"],
    "rate_limit": "100/m",
    "run_rate_limit": "",
    "tokens_per_minute": "500",
}


def _change_url(api_key: APIKey) -> str:
    return f"/admin/accounts/apikey/{api_key.pk}/change/"


@pytest.fixture
def team(alice):
    return project_services.project_create(name="Research", created_by=alice)


@pytest.fixture
def api_key(alice, team) -> APIKey:
    return services.api_key_create(project=team, created_by=alice, name="ci", scopes=["runs:read"])[0]


@pytest.fixture
def carol(team):
    """A staff user who is not a superuser, with the admin's permissions on keys, and an editor of the team."""
    user = UserFactory(username="carol", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="accounts", codename__in=["view_apikey", "add_apikey", "change_apikey"]
        )
    )
    project_services.member_add(project=team, user=user, role=Role.EDITOR, acting_role=None)
    return user


@pytest.fixture
def carol_client(carol) -> Client:
    client = Client()
    client.force_login(carol)
    return client


def _unchanged(api_key: APIKey) -> bool:
    stored = APIKey.objects.get(pk=api_key.pk)
    return (stored.name, stored.scopes, stored.rate_limit, stored.tokens_per_minute) == ("ci", ["runs:read"], "", None)


def test_an_editor_of_the_keys_project_may_not_change_it(carol_client, team, api_key):
    response = carol_client.post(_change_url(api_key), EDIT)

    assert response.status_code == 200  # the form again, with the refusal
    assert response.context["adminform"].form.errors == {
        "__all__": [f"Changing the API keys of {team} needs the admin role in it; you are editor."]
    }
    assert _unchanged(api_key)


def test_staff_who_are_not_members_may_not_change_it(carol_client, carol, team, api_key):
    project_services.member_remove(project=team, user=carol, acting_role=None)

    response = carol_client.post(_change_url(api_key), EDIT)

    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        f"Changing the API keys of {team} needs the admin role in it; you are not a member."
    ]
    assert _unchanged(api_key)


def test_an_admin_of_the_keys_project_may_and_the_scopes_are_still_validated(carol_client, carol, team, api_key):
    project_services.member_set_role(project=team, user=carol, role=Role.ADMIN, acting_role=None)

    refused = carol_client.post(_change_url(api_key), {**EDIT, "scopes": []})
    saved = carol_client.post(_change_url(api_key), EDIT)

    assert refused.status_code == 200
    assert set(refused.context["adminform"].form.errors) == {"scopes"}
    assert saved.status_code == 302
    stored = APIKey.objects.get(pk=api_key.pk)
    # scopes_clean's order.
    assert (stored.name, stored.scopes, stored.rate_limit, stored.tokens_per_minute) == (
        "renamed",
        ["prompts:read", "runs:read"],
        "100/m",
        500,
    )


def test_a_superuser_may_change_a_key_of_a_project_they_are_not_in(admin_client, api_key):
    response = admin_client.post(_change_url(api_key), EDIT)

    assert response.status_code == 302
    assert APIKey.objects.get(pk=api_key.pk).name == "renamed"


def test_only_a_superuser_may_delete_a_key(client, admin_client, alice):
    key, _ = services.api_key_create(project=alice.personal_project, created_by=alice, name="doomed")
    staff = UserFactory(username="keystaff", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="accounts", codename__endswith="apikey")
    )
    client.force_login(staff)

    refused = client.post(f"/admin/accounts/apikey/{key.pk}/delete/", {"post": "yes"})
    listed = client.get("/admin/accounts/apikey/").content.decode()
    allowed = admin_client.post(f"/admin/accounts/apikey/{key.pk}/delete/", {"post": "yes"})

    assert refused.status_code == 403 and "delete_selected" not in listed
    assert allowed.status_code == 302
