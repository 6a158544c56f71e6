"""The projects API: projects and their members, for signed-in users and for API keys."""

import pytest
from rest_framework.test import APIClient

from accounts import project_services, services
from accounts.models import APIKey, Membership, Project, Role, Scope
from accounts.tests.factories import UserFactory
from billing.models import CostLog
from billing.tests.factories import CostLogFactory
from llmops.tests.helpers import assert_error
from prompts import services as prompt_services
from prompts.models import Prompt
from prompts.tests.factories import prompt_with_version
from runs.models import Batch, Run
from runs.tests.factories import BatchFactory, RunFactory


def _session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def _key_client(project, user, scopes=None) -> tuple[APIClient, APIKey]:
    api_key, plaintext = services.api_key_create(project=project, created_by=user, name="k", scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client, api_key


def _member(project, user, role) -> None:
    project_services.member_add(project=project, user=user, role=role, acting_role=None)


def _role(project, user) -> str | None:
    return services.member_role(project=project, user=user)


@pytest.fixture
def acme(alice):
    """A team project alice owns."""
    return project_services.project_create(name="Acme", created_by=alice, slug="acme")


@pytest.fixture
def alice_session(alice) -> APIClient:
    return _session(alice)


@pytest.fixture
def bob_session(bob) -> APIClient:
    return _session(bob)


# Projects


def test_create_makes_the_caller_its_owner(alice, alice_session):
    response = alice_session.post("/api/v1/projects", {"name": "Acme support"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "Acme support"
    assert body["slug"] == "acme-support"
    assert body["role"] == "owner"
    assert body["personal"] is False
    assert body["protected_labels"] == ["production"]
    project = Project.objects.get(pk=body["id"])
    assert project.personal_for is None
    assert _role(project, alice) == Role.OWNER


def test_create_with_a_slug_and_a_taken_slug(alice_session, bob_session):
    response = alice_session.post("/api/v1/projects", {"name": "Acme", "slug": "acme"}, format="json")
    assert response.status_code == 201
    assert response.json()["slug"] == "acme"

    taken = bob_session.post("/api/v1/projects", {"name": "Other", "slug": "acme"}, format="json")

    assert_error(taken, 409, "slug_taken", fields={"slug"})
    assert Project.objects.filter(slug="acme").count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": 5}, "name"),
        ({"name": "Acme", "slug": "Acme Inc"}, "slug"),
        ({"name": "Acme", "slug": "-acme"}, "slug"),
        ({"name": "Acme", "slug": " acme"}, "slug"),
        ({"name": "Acme", "owner": "bob"}, "owner"),
    ],
)
def test_create_with_bad_input_is_400_naming_the_field(alice_session, body, field):
    before = Project.objects.count()

    response = alice_session.post("/api/v1/projects", body, format="json")

    assert_error(response, 400, fields={field})
    assert Project.objects.count() == before


def test_an_api_key_cannot_create_projects(alice_client):
    before = Project.objects.count()

    response = alice_client.post("/api/v1/projects", {"name": "Acme"}, format="json")

    error = assert_error(response, 403, "permission_denied")
    assert "API keys" in error["message"]
    assert Project.objects.count() == before


def test_anonymous_requests_are_401(db, anon_client, acme):
    assert_error(anon_client.get("/api/v1/projects"), 401)
    assert_error(anon_client.get("/api/v1/projects/acme/members"), 401)


def test_list_shows_the_callers_projects_with_their_role(alice, bob, bob_session, acme):
    _member(acme, bob, Role.EDITOR)

    response = bob_session.get("/api/v1/projects")

    assert response.status_code == 200
    rows = {row["slug"]: (row["role"], row["personal"]) for row in response.json()["results"]}
    assert rows == {"acme": ("editor", False), bob.personal_project.slug: ("owner", True)}
    assert alice.personal_project.slug not in rows


def test_a_key_lists_only_its_own_project(alice, alice_client, acme):
    response = alice_client.get("/api/v1/projects")

    assert response.status_code == 200
    assert [(row["slug"], row["role"]) for row in response.json()["results"]] == [
        (alice.personal_project.slug, "owner")
    ]


def test_retrieve_by_slug_or_id(alice_session, acme):
    by_slug = alice_session.get("/api/v1/projects/acme")
    by_id = alice_session.get(f"/api/v1/projects/{acme.pk}")

    assert by_slug.status_code == by_id.status_code == 200
    assert by_slug.json() == by_id.json()
    assert by_slug.json()["id"] == str(acme.pk)
    assert by_slug.json()["role"] == "owner"


def test_a_non_member_gets_the_same_404_as_for_a_missing_project(bob_session, acme):
    not_member = assert_error(bob_session.get("/api/v1/projects/acme"), 404, "project_not_found")
    missing = assert_error(bob_session.get("/api/v1/projects/nope"), 404, "project_not_found")

    assert not_member["message"] == missing["message"] == "No such project."
    assert_error(bob_session.get(f"/api/v1/projects/{acme.pk}"), 404, "project_not_found")
    assert_error(bob_session.get("/api/v1/projects/acme/members"), 404, "project_not_found")
    assert_error(bob_session.patch("/api/v1/projects/acme", {"name": "x"}, format="json"), 404, "project_not_found")
    assert_error(bob_session.delete("/api/v1/projects/acme"), 404, "project_not_found")
    assert Project.objects.get(pk=acme.pk).name == "Acme"


def test_a_key_of_another_project_gets_404(alice, alice_client, bob_client, acme):
    # alice is acme's owner, but her key belongs to her personal project.
    assert_error(alice_client.get("/api/v1/projects/acme"), 404, "project_not_found")
    assert_error(alice_client.get("/api/v1/projects/acme/members"), 404, "project_not_found")
    assert_error(
        alice_client.post("/api/v1/projects/acme/members", {"user": "bob", "role": "viewer"}, format="json"),
        404,
        "project_not_found",
    )
    assert_error(bob_client.get(f"/api/v1/projects/{alice.personal_project.slug}"), 404, "project_not_found")
    assert alice_client.get(f"/api/v1/projects/{alice.personal_project.slug}").status_code == 200


def test_a_key_of_the_project_acts_with_its_creators_role(alice, bob, acme):
    acme_client, _ = _key_client(acme, alice)

    assert acme_client.get("/api/v1/projects/acme").json()["role"] == "owner"
    response = acme_client.post("/api/v1/projects/acme/members", {"user": "bob", "role": "editor"}, format="json")

    assert response.status_code == 201, response.content
    assert _role(acme, bob) == Role.EDITOR


def test_keys_need_the_scopes(alice, acme):
    read_only, _ = _key_client(acme, alice, scopes=[Scope.PROMPTS_READ])
    no_read, _ = _key_client(acme, alice, scopes=[Scope.RUNS_READ])

    assert read_only.get("/api/v1/projects/acme/members").status_code == 200
    assert_error(
        read_only.post("/api/v1/projects/acme/members", {"user": "bob", "role": "viewer"}, format="json"),
        403,
        "insufficient_scope",
    )
    assert_error(read_only.patch("/api/v1/projects/acme", {"name": "x"}, format="json"), 403, "insufficient_scope")
    assert_error(read_only.delete("/api/v1/projects/acme"), 403, "insufficient_scope")
    assert_error(no_read.get("/api/v1/projects"), 403, "insufficient_scope")
    assert Project.objects.filter(pk=acme.pk, name="Acme").exists()


def test_an_admin_changes_the_name_and_protected_labels(bob, bob_session, acme):
    _member(acme, bob, Role.ADMIN)

    response = bob_session.patch(
        "/api/v1/projects/acme",
        {"name": "Acme support", "protected_labels": ["staging", "production", "staging"]},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["role"] == "admin"
    assert response.json()["protected_labels"] == ["production", "staging"]
    acme.refresh_from_db()
    assert acme.name == "Acme support"
    assert acme.protected_labels == ["production", "staging"]


def test_only_an_owner_changes_the_slug(alice_session, bob, bob_session, acme):
    _member(acme, bob, Role.ADMIN)

    assert_error(
        bob_session.patch("/api/v1/projects/acme", {"slug": "acme-2"}, format="json"), 403, "insufficient_role"
    )
    assert Project.objects.get(pk=acme.pk).slug == "acme"

    response = alice_session.patch("/api/v1/projects/acme", {"slug": "acme-2"}, format="json")

    assert response.status_code == 200
    assert response.json()["slug"] == "acme-2"
    assert alice_session.get("/api/v1/projects/acme-2").status_code == 200
    assert_error(alice_session.get("/api/v1/projects/acme"), 404, "project_not_found")


def test_an_editor_cannot_change_the_project(bob, bob_session, acme):
    _member(acme, bob, Role.EDITOR)

    response = bob_session.patch("/api/v1/projects/acme", {"name": "Mine"}, format="json")

    assert_error(response, 403, "insufficient_role")
    assert Project.objects.get(pk=acme.pk).name == "Acme"


def test_a_slug_taken_by_another_project_is_409(alice, alice_session, acme):
    response = alice_session.patch("/api/v1/projects/acme", {"slug": alice.personal_project.slug}, format="json")

    assert_error(response, 409, "slug_taken", fields={"slug"})
    assert Project.objects.get(pk=acme.pk).slug == "acme"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"protected_labels": "production"}, "protected_labels"),
        ({"protected_labels": ["Not a label"]}, "protected_labels.0"),
        ({"slug": "UPPER"}, "slug"),
        ({"name": ""}, "name"),
        ({"labels": []}, "labels"),
    ],
)
def test_patch_with_bad_input_is_400_naming_the_field(alice_session, acme, body, field):
    response = alice_session.patch("/api/v1/projects/acme", body, format="json")

    assert_error(response, 400, fields={field})
    acme.refresh_from_db()
    assert (acme.name, acme.slug, acme.protected_labels) == ("Acme", "acme", ["production"])


def test_only_an_owner_deletes_a_project(alice_session, bob, bob_session, acme):
    _member(acme, bob, Role.ADMIN)

    assert_error(bob_session.delete("/api/v1/projects/acme"), 403, "insufficient_role")
    assert Project.objects.filter(pk=acme.pk).exists()

    response = alice_session.delete("/api/v1/projects/acme")

    assert response.status_code == 204
    assert not Project.objects.filter(pk=acme.pk).exists()
    assert not Membership.objects.filter(project_id=acme.pk).exists()


def test_a_personal_project_cannot_be_deleted(alice, alice_session, alice_client):
    slug = alice.personal_project.slug

    assert_error(alice_session.delete(f"/api/v1/projects/{slug}"), 409, "personal_project")
    assert_error(alice_client.delete(f"/api/v1/projects/{slug}"), 409, "personal_project")
    assert Project.objects.filter(personal_for=alice).exists()


# Members


def test_members_list(alice, bob, bob_session, acme):
    _member(acme, bob, Role.VIEWER)

    response = bob_session.get("/api/v1/projects/acme/members")

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(row["username"], row["email"], row["role"]) for row in rows] == [
        ("alice", alice.email, "owner"),
        ("bob", bob.email, "viewer"),
    ]
    assert all(row["joined"] for row in rows)


def test_an_admin_adds_members_by_username_or_email(bob, bob_session, acme):
    _member(acme, bob, Role.ADMIN)
    carol = UserFactory(username="carol", email="Carol@Example.com")
    dave = UserFactory(username="dave")

    by_name = bob_session.post("/api/v1/projects/acme/members", {"user": "dave", "role": "editor"}, format="json")
    by_email = bob_session.post(
        "/api/v1/projects/acme/members", {"user": "carol@example.com", "role": "admin"}, format="json"
    )

    assert by_name.status_code == 201, by_name.content
    assert by_name.json()["username"] == "dave"
    assert by_name.json()["role"] == "editor"
    assert by_email.status_code == 201, by_email.content
    assert by_email.json()["username"] == "carol"
    assert _role(acme, dave) == Role.EDITOR
    assert _role(acme, carol) == Role.ADMIN


def test_adding_a_member_twice_is_409(bob, alice_session, acme):
    _member(acme, bob, Role.VIEWER)

    response = alice_session.post("/api/v1/projects/acme/members", {"user": "bob", "role": "admin"}, format="json")

    assert_error(response, 409, fields={"user"})
    assert _role(acme, bob) == Role.VIEWER


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user": "nobody", "role": "viewer"}, "user"),
        ({"user": "bob", "role": "king"}, "role"),
        ({"user": "bob"}, "role"),
        ({"role": "viewer"}, "user"),
        ({"user": "bob", "role": "viewer", "scopes": []}, "scopes"),
    ],
)
def test_adding_with_bad_input_is_400_naming_the_field(bob, alice_session, acme, body, field):
    response = alice_session.post("/api/v1/projects/acme/members", body, format="json")

    assert_error(response, 400, fields={field})
    assert _role(acme, bob) is None


def test_a_viewer_cannot_add_members(bob, bob_session, acme):
    _member(acme, bob, Role.VIEWER)
    UserFactory(username="carol")

    added = bob_session.post("/api/v1/projects/acme/members", {"user": "carol", "role": "viewer"}, format="json")
    # Not a 400 for an unknown user either: a viewer learns nothing about which accounts exist.
    unknown = bob_session.post("/api/v1/projects/acme/members", {"user": "nobody", "role": "viewer"}, format="json")

    assert_error(added, 403, "insufficient_role")
    assert_error(unknown, 403, "insufficient_role")
    assert Membership.objects.filter(project=acme).count() == 2


def test_an_admin_changes_roles(bob, bob_session, acme):
    _member(acme, bob, Role.ADMIN)
    carol = UserFactory(username="carol")
    _member(acme, carol, Role.VIEWER)

    response = bob_session.patch("/api/v1/projects/acme/members/carol", {"role": "editor"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["role"] == "editor"
    assert _role(acme, carol) == Role.EDITOR


def test_patch_without_a_role_changes_nothing(bob, alice_session, acme):
    _member(acme, bob, Role.VIEWER)

    response = alice_session.patch("/api/v1/projects/acme/members/bob", {}, format="json")

    assert response.status_code == 200
    assert response.json()["role"] == "viewer"
    assert _role(acme, bob) == Role.VIEWER


def test_changing_the_role_of_a_non_member_is_404(bob, alice_session, acme):
    assert_error(alice_session.patch("/api/v1/projects/acme/members/bob", {"role": "admin"}, format="json"), 404)
    assert_error(alice_session.patch("/api/v1/projects/acme/members/nobody", {"role": "admin"}, format="json"), 404)
    assert_error(alice_session.delete("/api/v1/projects/acme/members/nobody"), 404)
    assert _role(acme, bob) is None


def test_an_admin_cannot_make_or_remove_an_owner(alice, bob, bob_session, acme):
    _member(acme, bob, Role.ADMIN)
    carol = UserFactory(username="carol")
    _member(acme, carol, Role.VIEWER)

    add_owner = bob_session.post(
        "/api/v1/projects/acme/members", {"user": UserFactory(username="dave").username, "role": "owner"}, format="json"
    )
    promote = bob_session.patch("/api/v1/projects/acme/members/carol", {"role": "owner"}, format="json")
    self_promote = bob_session.patch("/api/v1/projects/acme/members/bob", {"role": "owner"}, format="json")
    demote_owner = bob_session.patch("/api/v1/projects/acme/members/alice", {"role": "viewer"}, format="json")
    remove_owner = bob_session.delete("/api/v1/projects/acme/members/alice")

    for response in (add_owner, promote, self_promote, demote_owner, remove_owner):
        assert_error(response, 403, "insufficient_role")
    assert {m.user.username: m.role for m in Membership.objects.filter(project=acme)} == {
        "alice": "owner",
        "bob": "admin",
        "carol": "viewer",
    }


def test_an_owner_makes_another_owner(alice_session, bob, acme):
    _member(acme, bob, Role.VIEWER)

    response = alice_session.patch("/api/v1/projects/acme/members/bob", {"role": "owner"}, format="json")

    assert response.status_code == 200
    assert _role(acme, bob) == Role.OWNER


def test_the_last_owner_cannot_be_demoted_or_removed(alice, alice_session, acme):
    demote = alice_session.patch("/api/v1/projects/acme/members/alice", {"role": "admin"}, format="json")
    remove = alice_session.delete("/api/v1/projects/acme/members/alice")

    assert_error(demote, 409, "last_owner")
    assert_error(remove, 409, "last_owner")
    assert _role(acme, alice) == Role.OWNER


def test_an_owner_steps_down_once_there_is_another(alice, alice_session, bob, acme):
    _member(acme, bob, Role.OWNER)

    response = alice_session.patch("/api/v1/projects/acme/members/alice", {"role": "admin"}, format="json")

    assert response.status_code == 200
    assert _role(acme, alice) == Role.ADMIN
    assert_error(
        _session(bob).delete("/api/v1/projects/acme/members/bob"), 409, "last_owner"
    )  # bob is now the last owner


def test_removing_a_member_revokes_their_keys_in_the_project(bob, alice_session, acme):
    _member(acme, bob, Role.ADMIN)
    bobs_acme_client, bobs_key = _key_client(acme, bob)
    _, bobs_personal_key = _key_client(bob.personal_project, bob)
    assert bobs_acme_client.get("/api/v1/projects/acme").status_code == 200

    response = alice_session.delete("/api/v1/projects/acme/members/bob")

    assert response.status_code == 204
    assert _role(acme, bob) is None
    bobs_key.refresh_from_db()
    bobs_personal_key.refresh_from_db()
    assert bobs_key.is_active is False
    assert bobs_key.revoked_at is not None
    assert bobs_personal_key.is_active is True  # only the keys of the project he left
    assert_error(bobs_acme_client.get("/api/v1/projects/acme"), 401)
    assert_error(_session(bob).get("/api/v1/projects/acme"), 404, "project_not_found")


def test_a_member_leaves_a_project(bob, bob_session, acme):
    _member(acme, bob, Role.ADMIN)

    response = bob_session.delete("/api/v1/projects/acme/members/bob")

    assert response.status_code == 204
    assert _role(acme, bob) is None


def test_deleting_a_project_deletes_everything_it_owns(alice, alice_session, acme):
    """Versions RESTRICT the runs, labels and moves that name them: deleted alone they would be refused,
    deleted with their project they all go (once a ProtectedError, a 500)."""
    prompt, version = prompt_with_version(acme, name="greet")
    prompt_services.label_move(prompt=prompt, label="staging", version_number=1, moved_by=alice)
    run = RunFactory(project=acme, created_by=alice, prompt_version=version)
    CostLogFactory(run=run)
    BatchFactory(project=acme, created_by=alice, prompt_version=version)

    response = alice_session.delete("/api/v1/projects/acme")

    assert response.status_code == 204, response.content
    assert not Prompt.objects.filter(pk=prompt.pk).exists()
    assert not Run.objects.filter(pk=run.pk).exists()
    assert not CostLog.objects.filter(run_id=run.pk).exists()
    assert not Batch.objects.filter(project_id=acme.pk).exists()
