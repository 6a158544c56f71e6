"""`manage.py createproject` and `manage.py project_member`."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts import project_services, services
from accounts.models import APIKey, Project, Role
from accounts.tests.factories import UserFactory


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


@pytest.fixture
def acme(alice):
    return project_services.project_create(name="Acme", created_by=alice, slug="acme")


def test_createproject_prints_the_slug_and_makes_the_owner(alice):
    slug = _run("createproject", "Acme Support", "--owner", "alice")

    assert slug == "acme-support"
    project = Project.objects.get(slug=slug)
    assert project.name == "Acme Support"
    assert project.personal_for is None
    assert services.member_role(project=project, user=alice) == Role.OWNER


def test_createproject_with_a_slug(alice):
    assert _run("createproject", "Acme", "--owner", "alice", "--slug", "acme-eu") == "acme-eu"
    assert Project.objects.filter(slug="acme-eu", name="Acme").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Acme", "--owner", "nobody"], "No user named 'nobody'"),
        (["Acme", "--owner", "alice", "--slug", "Not A Slug"], "Invalid slug"),
        (["  ", "--owner", "alice"], "A project needs a name"),
        (["Acme", "--owner", "alice", "--slug", "acme"], "slug 'acme' exists"),
    ],
)
def test_createproject_fails_cleanly(alice, acme, args, message):
    before = Project.objects.count()
    out = StringIO()

    with pytest.raises(CommandError, match=message):
        call_command("createproject", *args, stdout=out, stderr=StringIO())

    assert out.getvalue() == ""
    assert Project.objects.count() == before


def test_project_member_add_role_remove(bob, acme):
    assert "editor" in _run("project_member", "add", "acme", "bob", "--role", "editor")
    assert services.member_role(project=acme, user=bob) == Role.EDITOR

    _run("project_member", "role", str(acme.pk), "bob", "--role", "owner")  # by id; staff may make owners
    assert services.member_role(project=acme, user=bob) == Role.OWNER

    _run("project_member", "remove", "acme", "bob")
    assert services.member_role(project=acme, user=bob) is None


def test_project_member_add_by_email(acme):
    carol = UserFactory(username="carol", email="carol@example.com")

    _run("project_member", "add", "acme", "CAROL@example.com", "--role", "viewer")

    assert services.member_role(project=acme, user=carol) == Role.VIEWER


def test_project_member_remove_revokes_their_keys(bob, acme):
    _run("project_member", "add", "acme", "bob", "--role", "admin")
    api_key, _ = services.api_key_create(project=acme, created_by=bob, name="bob's")

    output = _run("project_member", "remove", "acme", "bob")

    assert "revoked 1" in output
    api_key.refresh_from_db()
    assert api_key.is_active is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["role", "acme", "alice", "--role", "admin"], "last owner cannot be demoted"),
        (["remove", "acme", "alice"], "last owner cannot be removed"),
        (["add", "acme", "alice", "--role", "viewer"], "already a member"),
        (["add", "acme", "bob"], "--role is required"),
        (["role", "acme", "bob", "--role", "admin"], "bob is not a member"),
        (["add", "nope", "bob", "--role", "viewer"], "No project 'nope'"),
        (["add", "acme", "nobody", "--role", "viewer"], "'nobody': No user has this username or email."),
    ],
)
def test_project_member_fails_with_the_services_message(alice, bob, acme, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("project_member", *args, stdout=StringIO(), stderr=StringIO())

    assert services.member_role(project=acme, user=alice) == Role.OWNER
    assert services.member_role(project=acme, user=bob) is None
    assert not APIKey.objects.filter(project=acme).exists()
