"""The project and membership admin: members are written through accounts.project_services (the last
owner stays, a removed member's keys are revoked), and the project page shows its keys, budgets and
spend read-only."""

import re
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.forms import BooleanField

from accounts import project_services, services
from accounts.models import APIKey, Membership, Project, Role
from accounts.tests.factories import UserFactory
from billing.models import Budget
from billing.tests.factories import CostLogFactory
from runs.tests.factories import RunFactory

CHANGELIST_URL = "/admin/accounts/project/"
MEMBERSHIPS_URL = "/admin/accounts/membership/"


def _change_url(project: Project) -> str:
    return f"{CHANGELIST_URL}{project.pk}/change/"


@pytest.fixture
def team(alice, bob):
    """alice's team project, with bob as an editor."""
    project = project_services.project_create(name="Research", created_by=alice)
    project_services.member_add(project=project, user=bob, role=Role.EDITOR, acting_role=None)
    return project


def _submitted(response) -> dict[str, str]:
    """The change page's form and inlines as a browser submits them when nothing is touched."""
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        forms += [inline.formset.management_form, *inline.formset.forms]
    data = {}
    for form in forms:
        for name, field in form.fields.items():
            value = form[name].value()
            if isinstance(field, BooleanField):
                if value:
                    data[form.add_prefix(name)] = "on"
            else:
                data[form.add_prefix(name)] = "" if value is None else str(value)
    return data


def _member_row(data: dict[str, str], user) -> str:
    """The inline prefix (`memberships-N`) of `user`'s row."""
    for key, value in data.items():
        match = re.fullmatch(r"(memberships-\d+)-user", key)
        if match and value == str(user.pk):
            return match.group(1)
    raise AssertionError(f"{user} has no row in the members inline")


def _roles(project: Project) -> dict[str, str]:
    return dict(Membership.objects.filter(project=project).values_list("user__username", "role"))


def test_changelist_lists_personal_and_team_projects_with_member_counts(admin_client, admin_user, alice, bob, team):
    response = admin_client.get(CHANGELIST_URL)
    personal = admin_client.get(CHANGELIST_URL, {"kind": "personal"})
    teams = admin_client.get(CHANGELIST_URL, {"kind": "team"})
    searched = admin_client.get(CHANGELIST_URL, {"q": "bob"})

    assert response.status_code == 200
    page = response.content.decode()
    assert team.slug in page and alice.personal_project.slug in page
    counts = {project.slug: project.member_count for project in response.context["cl"].result_list}
    assert counts[team.slug] == 2
    assert counts[alice.personal_project.slug] == 1
    everyones = {alice.personal_project, bob.personal_project, admin_user.personal_project}
    assert set(personal.context["cl"].result_list) == everyones
    assert list(teams.context["cl"].result_list) == [team]
    # By a member's username: bob's personal project and the team he is a member of.
    assert set(searched.context["cl"].result_list) == {team, bob.personal_project}


@pytest.mark.parametrize("which", ["personal", "team"])
def test_change_page_shows_members_keys_budgets_and_spend(admin_client, alice, team, which):
    project = alice.personal_project if which == "personal" else team
    api_key, plaintext = services.api_key_create(project=project, created_by=alice, name="ci")
    Budget.objects.create(project=project, amount=Decimal("10"), window="month")
    run = RunFactory(owner=alice, project=project)
    CostLogFactory(run=run, total_cost=Decimal("1.25"))
    unknown_run = RunFactory(owner=alice, project=project)
    CostLogFactory(run=unknown_run, input_cost=None, output_cost=None, total_cost=None, cost_known=False)

    response = admin_client.get(_change_url(project))

    assert response.status_code == 200
    page = response.content.decode()
    members = response.context["inline_admin_formsets"][0].formset
    expected = {"alice": Role.OWNER} if which == "personal" else {"alice": Role.OWNER, "bob": Role.EDITOR}
    assert {form.instance.user.username: form.instance.role for form in members.initial_forms} == expected
    assert api_key.prefix in page
    assert plaintext.split(".")[1] not in page and api_key.secret_hash not in page
    assert re.search(r'class="budget-amount">10\.00<', page)
    assert re.search(r'class="budget-spent">1\.25<', page)
    assert re.search(r'class="budget-remaining">8\.75<', page)
    assert '<strong id="project-spend-total">1.25</strong>' in page
    assert '<span id="project-spend-runs">2</span>' in page
    assert '<span id="project-spend-unknown">1</span>' in page


def test_demoting_the_last_owner_through_the_inline_shows_an_error_and_changes_nothing(admin_client, alice, team):
    data = _submitted(admin_client.get(_change_url(team)))
    data[f"{_member_row(data, alice)}-role"] = Role.ADMIN
    data["name"] = "Renamed in the same submission"

    response = admin_client.post(_change_url(team), data)

    assert response.status_code == 200  # the form again, not a redirect
    errors = response.context["inline_admin_formsets"][0].formset.non_form_errors()
    assert errors == ["alice: The project's last owner cannot be demoted; make another owner first."]
    assert "last owner cannot be demoted" in response.content.decode()
    team.refresh_from_db()
    assert team.name == "Research"  # the whole submission was rolled back
    assert _roles(team) == {"alice": Role.OWNER, "bob": Role.EDITOR}
    assert not LogEntry.objects.filter(object_id=str(team.pk)).exists()


def test_removing_the_last_owner_through_the_inline_shows_an_error(admin_client, alice, team):
    data = _submitted(admin_client.get(_change_url(team)))
    data[f"{_member_row(data, alice)}-DELETE"] = "on"

    response = admin_client.post(_change_url(team), data)

    assert response.status_code == 200
    assert "last owner cannot be removed" in response.content.decode()
    assert _roles(team) == {"alice": Role.OWNER, "bob": Role.EDITOR}


def _member_form(response, user):
    formset = response.context["inline_admin_formsets"][0].formset
    return next(form for form in formset.forms if form.instance.pk and form.instance.user == user)


def test_the_last_owners_refusal_is_shown_on_their_row_too(admin_client, alice, team):
    data = _submitted(admin_client.get(_change_url(team)))
    demoted = {**data, f"{_member_row(data, alice)}-role": Role.ADMIN}
    removed = {**data, f"{_member_row(data, alice)}-DELETE": "on"}

    demoting = admin_client.post(_change_url(team), demoted)
    removing = admin_client.post(_change_url(team), removed)

    assert _member_form(demoting, alice).errors == {
        "role": ["The project's last owner cannot be demoted; make another owner first."]
    }
    assert _member_form(removing, alice).non_field_errors() == [
        "The project's last owner cannot be removed; make another owner first."
    ]
    assert 'class="row-form-errors"' in removing.content.decode()
    assert _roles(team) == {"alice": Role.OWNER, "bob": Role.EDITOR}


@pytest.mark.parametrize("value", ["00000000-0000-0000-0000-000000000000", "nobody"])
def test_adding_an_unknown_user_is_an_error_at_the_field(admin_client, team, value):
    data = _submitted(admin_client.get(_change_url(team)))
    extra = f"memberships-{int(data['memberships-TOTAL_FORMS']) - 1}"
    data[f"{extra}-user"] = value
    data[f"{extra}-role"] = Role.VIEWER

    response = admin_client.post(_change_url(team), data)

    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0].formset
    assert list(formset.forms[-1].errors) == ["user"]
    assert _roles(team) == {"alice": Role.OWNER, "bob": Role.EDITOR}


def test_ownership_can_be_handed_over_in_one_submission(admin_client, alice, bob, team):
    data = _submitted(admin_client.get(_change_url(team)))
    data[f"{_member_row(data, alice)}-role"] = Role.VIEWER
    data[f"{_member_row(data, bob)}-role"] = Role.OWNER

    response = admin_client.post(_change_url(team), data)

    assert response.status_code == 302
    assert _roles(team) == {"alice": Role.VIEWER, "bob": Role.OWNER}


def test_removing_a_member_through_the_inline_revokes_their_keys_in_that_project(admin_client, alice, bob, team):
    project_services.member_set_role(project=team, user=bob, role=Role.ADMIN, acting_role=None)
    in_team, _ = services.api_key_create(project=team, created_by=bob, name="team key")
    elsewhere, _ = services.api_key_create(project=bob.personal_project, created_by=bob, name="own key")
    alices, _ = services.api_key_create(project=team, created_by=alice, name="alice's")
    data = _submitted(admin_client.get(_change_url(team)))
    data[f"{_member_row(data, bob)}-DELETE"] = "on"

    response = admin_client.post(_change_url(team), data)

    assert response.status_code == 302
    assert _roles(team) == {"alice": Role.OWNER}
    assert APIKey.objects.get(pk=in_team.pk).status == "revoked"
    assert APIKey.objects.get(pk=elsewhere.pk).status == "active"
    assert APIKey.objects.get(pk=alices.pk).status == "active"


def test_adding_a_member_through_the_inline(admin_client, team):
    carol = UserFactory(username="carol")
    data = _submitted(admin_client.get(_change_url(team)))
    extra = f"memberships-{int(data['memberships-TOTAL_FORMS']) - 1}"
    data[f"{extra}-user"] = str(carol.pk)
    data[f"{extra}-role"] = Role.VIEWER

    response = admin_client.post(_change_url(team), data)

    assert response.status_code == 302
    assert _roles(team) == {"alice": Role.OWNER, "bob": Role.EDITOR, "carol": Role.VIEWER}


def test_a_member_row_cannot_be_moved_to_another_user(admin_client, bob, team):
    carol = UserFactory(username="carol")
    data = _submitted(admin_client.get(_change_url(team)))
    data[f"{_member_row(data, bob)}-user"] = str(carol.pk)

    response = admin_client.post(_change_url(team), data)

    assert response.status_code == 200
    assert "cannot change" in response.content.decode()
    assert _roles(team) == {"alice": Role.OWNER, "bob": Role.EDITOR}


def test_add_page_creates_a_project_with_its_owner(admin_client, bob):
    assert admin_client.get(f"{CHANGELIST_URL}add/").status_code == 200

    response = admin_client.post(f"{CHANGELIST_URL}add/", {"name": "Evals", "slug": "", "owner": str(bob.pk)})

    assert response.status_code == 302
    project = Project.objects.get(name="Evals")
    assert project.slug == "evals"
    assert project.personal_for is None
    assert _roles(project) == {"bob": Role.OWNER}


def test_add_page_shows_a_taken_slug_as_a_form_error(admin_client, alice, team):
    response = admin_client.post(f"{CHANGELIST_URL}add/", {"name": "Other", "slug": team.slug, "owner": str(alice.pk)})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["slug"] == ["Project with this Slug already exists."]
    assert not Project.objects.filter(name="Other").exists()


def test_a_refused_project_change_is_shown_on_its_field(admin_client, team):
    data = _submitted(admin_client.get(_change_url(team)))
    data["protected_labels"] = '["production", "Not A Label"]'

    response = admin_client.post(_change_url(team), data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["protected_labels"] == [
        "protected_labels: Not label names: 'Not A Label'."
    ]
    team.refresh_from_db()
    assert team.protected_labels == ["production"]


def test_a_personal_project_cannot_be_deleted_and_a_team_project_can(admin_client, alice, team):
    personal = alice.personal_project

    assert admin_client.post(f"{CHANGELIST_URL}{personal.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.post(f"{CHANGELIST_URL}{team.pk}/delete/", {"post": "yes"}).status_code == 302

    assert Project.objects.filter(pk=personal.pk).exists()
    assert not Project.objects.filter(pk=team.pk).exists()


def test_membership_admin_lists_and_searches_memberships(admin_client, bob, team):
    membership = Membership.objects.get(project=team, user=bob)

    response = admin_client.get(MEMBERSHIPS_URL, {"q": team.slug})
    change = admin_client.get(f"{MEMBERSHIPS_URL}{membership.pk}/change/")

    assert response.status_code == 200
    assert set(response.context["cl"].result_list) == set(Membership.objects.filter(project=team))
    assert change.status_code == 200


def test_membership_admin_demoting_the_last_owner_is_a_form_error(admin_client, alice, team):
    membership = Membership.objects.get(project=team, user=alice)

    response = admin_client.post(f"{MEMBERSHIPS_URL}{membership.pk}/change/", {"role": Role.EDITOR})

    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        "The project's last owner cannot be demoted; make another owner first."
    ]
    assert _roles(team)["alice"] == Role.OWNER


def test_membership_admin_deleting_the_last_owner_is_an_error_message(admin_client, alice, team):
    membership = Membership.objects.get(project=team, user=alice)

    response = admin_client.post(f"{MEMBERSHIPS_URL}{membership.pk}/delete/", {"post": "yes"}, follow=True)

    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == [
        "alice: The project's last owner cannot be removed; make another owner first."
    ]
    assert Membership.objects.filter(pk=membership.pk).exists()


def test_membership_admin_delete_revokes_the_members_keys(admin_client, bob, team):
    project_services.member_set_role(project=team, user=bob, role=Role.ADMIN, acting_role=None)
    api_key, _ = services.api_key_create(project=team, created_by=bob, name="team key")
    membership = Membership.objects.get(project=team, user=bob)

    response = admin_client.post(f"{MEMBERSHIPS_URL}{membership.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert APIKey.objects.get(pk=api_key.pk).status == "revoked"


def test_membership_admin_add_goes_through_the_service(admin_client, team):
    carol = UserFactory(username="carol")

    response = admin_client.post(
        f"{MEMBERSHIPS_URL}add/", {"project": str(team.pk), "user": str(carol.pk), "role": Role.EDITOR}
    )

    assert response.status_code == 302
    assert _roles(team)["carol"] == Role.EDITOR


def test_bulk_delete_is_not_offered(admin_client):
    # It would delete the rows directly, past the services; these are deleted one at a time.
    for url in (CHANGELIST_URL, MEMBERSHIPS_URL):
        response = admin_client.get(url)
        assert response.status_code == 200
        assert response.context["action_form"] is None
