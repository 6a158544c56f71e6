"""A team shares one project: prompts, runs and spend through each member's own key; outsiders see
nothing; leaving or being demoted takes effect on the next request, for sessions and keys alike."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from accounts import project_services
from accounts import services as account_services
from accounts.models import APIKey, Role
from accounts.tests.factories import UserFactory
from billing.models import CostLog
from billing.tests.factories import CostLogFactory
from llmops.tests.helpers import assert_error
from runs.tests.factories import RunFactory

pytestmark = pytest.mark.django_db

GREET = {"name": "greet", "template": "Hello {{ name }}", "variables": {"name": {}}, "model": "local/smollm2"}


def _keyed(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


@pytest.fixture
def team(alice, bob):
    """`acme`, owned by alice, with bob as an admin; each made a key of it."""
    project = project_services.project_create(name="Acme", slug="acme", created_by=alice)
    project_services.member_add(project=project, user=bob, role=Role.ADMIN, acting_role=Role.OWNER)
    keys = {}
    for user in (alice, bob):
        _, keys[user.username] = account_services.api_key_create(project=project, created_by=user, name="team")
    return project, keys


def test_two_members_share_prompts_runs_and_spend_through_their_own_keys(team, alice, bob):
    project, keys = team
    alices, bobs = _keyed(keys["alice"]), _keyed(keys["bob"])
    carol = UserFactory(username="carol")
    _, carols_key = account_services.api_key_create(project=carol.personal_project, created_by=carol, name="c")

    assert alices.post("/api/v1/prompts", GREET, format="json").status_code == 201
    version = bobs.post("/api/v1/prompts/greet/versions", {"template": "Hi {{ name }}"}, format="json")
    runs = [RunFactory(project=project, created_by=user) for user in (alice, bob)]
    for run in runs:
        CostLogFactory(run=run, total_cost=Decimal("0.25"))

    assert version.status_code == 201 and version.json()["created_by"] == "bob"
    assert "greet" in [p["name"] for p in alices.get("/api/v1/prompts").json()["results"]]
    assert {r["id"] for r in alices.get("/api/v1/runs").json()["results"]} == {str(r.pk) for r in runs}
    by_member = bobs.get("/api/v1/costs/summary", {"group_by": "member"}).json()
    assert {g["group"]: g["cost"] for g in by_member["groups"]} == {"alice": "0.2500000000", "bob": "0.2500000000"}
    # Carol, outside the project, sees none of it, by key or signed in.
    carols = _keyed(carols_key)
    assert carols.get("/api/v1/prompts").json()["results"] == []
    assert carols.get("/api/v1/runs").json()["results"] == []
    assert_error(carols.get("/api/v1/prompts/greet"), 404)
    assert_error(carols.get(f"/api/v1/runs/{runs[0].pk}"), 404)
    signed_in = APIClient()
    signed_in.force_login(carol)
    assert_error(signed_in.get("/api/v1/prompts", HTTP_X_PROJECT="acme"), 404, "project_not_found")


def test_a_removed_member_loses_the_session_and_the_keys_at_once(team, alice, bob):
    project, keys = team
    session = APIClient()
    session.force_login(bob)
    assert session.get("/api/v1/prompts", HTTP_X_PROJECT="acme").status_code == 200
    assert _keyed(keys["bob"]).get("/api/v1/prompts").status_code == 200

    revoked = project_services.member_remove(project=project, user=bob, acting_role=Role.OWNER)

    assert revoked == 1
    assert_error(session.get("/api/v1/prompts", HTTP_X_PROJECT="acme"), 404, "project_not_found")
    assert_error(_keyed(keys["bob"]).get("/api/v1/prompts"), 401)
    assert APIKey.objects.get(project=project, created_by=bob).status == "revoked"
    # His personal project and alice's key are untouched.
    assert session.get("/api/v1/prompts").status_code == 200
    assert _keyed(keys["alice"]).get("/api/v1/prompts").status_code == 200


def test_a_key_whose_creator_left_stops_even_if_it_was_not_revoked(team, alice, bob):
    """Belt and braces: the membership is checked on every request, not only revoked on removal."""
    project, keys = team
    from accounts.models import Membership

    Membership.objects.filter(project=project, user=bob).delete()  # as a raw delete would

    error = assert_error(_keyed(keys["bob"]).get("/api/v1/prompts"), 401)
    assert "no longer a member" in error["message"]


def test_demoting_a_member_narrows_what_their_keys_may_do(team, alice, bob):
    project, keys = team
    bobs = _keyed(keys["bob"])
    assert bobs.get("/api/v1/keys").status_code == 200  # an admin's key manages keys

    project_services.member_set_role(project=project, user=bob, role=Role.VIEWER, acting_role=Role.OWNER)

    assert_error(bobs.get("/api/v1/keys"), 403, "insufficient_role")
    assert_error(bobs.post("/api/v1/prompts", GREET, format="json"), 403, "insufficient_role")
    assert bobs.get("/api/v1/prompts").status_code == 200  # a viewer still reads

    project_services.member_set_role(project=project, user=bob, role=Role.EDITOR, acting_role=Role.OWNER)

    assert bobs.post("/api/v1/prompts", GREET, format="json").status_code == 201


def test_a_key_is_never_made_by_a_member_below_admin(team, alice):
    project, _ = team
    editor = UserFactory(username="eve")
    project_services.member_add(project=project, user=editor, role=Role.EDITOR, acting_role=Role.OWNER)

    with pytest.raises(account_services.InsufficientRole):
        account_services.api_key_create(project=project, created_by=editor, name="nope")
    outsider = UserFactory(username="oscar")
    with pytest.raises(account_services.InsufficientRole):
        account_services.api_key_create(project=project, created_by=outsider, name="nope")
    assert not APIKey.objects.filter(name="nope").exists()


def test_a_key_names_only_its_own_project(team, alice):
    _, keys = team

    assert _keyed(keys["alice"]).get("/api/v1/prompts", HTTP_X_PROJECT="acme").status_code == 200
    assert_error(
        _keyed(keys["alice"]).get("/api/v1/prompts", HTTP_X_PROJECT=alice.personal_project.slug),
        404,
        "project_not_found",
    )


def test_every_new_user_gets_a_personal_project_they_own():
    user = UserFactory(username="dora")

    project = user.personal_project
    assert project.slug == "dora"
    assert list(project.memberships.values_list("user__username", "role")) == [("dora", "owner")]
    assert project.protected_labels == ["production"]
    assert CostLog.objects.filter(project=project).count() == 0
