"""A project's keys and budgets from its admin page: the add-key and add-budget links fill the project
in, each key row has its own rotate and revoke buttons (POST forms to APIKeyAdmin's per-object views,
which ask before they act), a new or rotated key's plaintext is shown once, and a staff user who is
not a superuser needs the admin role in the project."""

import re
from datetime import timedelta
from html.parser import HTMLParser
from io import StringIO
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import keys, project_services, services
from accounts.models import APIKey, Project, Role, all_scopes
from accounts.tests.factories import UserFactory
from billing.models import Budget

PLAINTEXT = re.compile(r'<code id="api-key-plaintext"[^>]*>([^<]+)</code>')
ROTATED_PLAINTEXTS = re.compile(r'<code class="api-key-plaintext"[^>]*>([^<]+)</code>')


def _project_url(project: Project) -> str:
    return f"/admin/accounts/project/{project.pk}/change/"


def _key_url(api_key: APIKey, view: str) -> str:
    return f"/admin/accounts/apikey/{api_key.pk}/{view}/"


def _works(plaintext: str) -> bool:
    """Whether the API takes the key (a key without keys:manage is 403 there, an unknown one 401)."""
    status = APIClient().get("/api/v1/keys", HTTP_AUTHORIZATION=f"Bearer {plaintext}").status_code
    assert status in (200, 401, 403), status
    return status != 401


def _messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


class _Page(HTMLParser):
    """What the project page offers: its forms (by id: method, action, and whether one sits inside
    another, which a browser would not submit), links with an id, and each key row's buttons (class:
    the id of the form it submits), links (class: href) and status."""

    def __init__(self, html: str):
        super().__init__()
        self.forms: dict[str, dict[str, Any]] = {}
        self.links: dict[str, str] = {}
        self.rows: dict[str, dict[str, Any]] = {}
        self.budget_rows: dict[str, dict[str, str]] = {}
        self._form_depth = 0
        self._row: dict[str, Any] | None = None
        self._cell = ""
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {name: value or "" for name, value in attrs}
        classes = a.get("class", "").split()
        if tag == "form":
            self.forms[a.get("id", "")] = {
                "method": a.get("method"),
                "action": a.get("action"),
                "nested": self._form_depth > 0,
                "csrf": None,
            }
            self._form_depth += 1
            self._current_form = a.get("id", "")
        elif tag == "input" and a.get("name") == "csrfmiddlewaretoken" and self._form_depth:
            self.forms[self._current_form]["csrf"] = a["value"]
        elif tag == "tr" and "api-key-row" in classes:
            self._row = self.rows[a["id"].removeprefix("api-key-")] = {"buttons": {}, "links": {}, "status": ""}
        elif tag == "tr" and "budget-row" in classes:
            self._row = None
            self.budget_rows[a["id"].removeprefix("budget-")] = {}
            self._budget = a["id"].removeprefix("budget-")
        elif tag == "button" and self._row is not None:
            self._row["buttons"][classes[-1]] = a.get("form")
        elif tag == "a" and self._row is not None and classes:
            self._row["links"][classes[0]] = a["href"]
        elif tag == "a" and "budget-edit" in classes:
            self.budget_rows[self._budget]["edit"] = a["href"]
        elif tag == "a" and a.get("id"):
            self.links[a["id"]] = a["href"]
        if tag == "td":
            self._cell = a.get("class", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form_depth -= 1
        elif tag == "tr":
            self._row = None
        elif tag == "td":
            self._cell = ""

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._cell == "key-status":
            self._row["status"] += data.strip()
        elif self._row is not None and self._cell in ("key-scopes", "key-limits"):
            self._row[self._cell] = " ".join((self._row.get(self._cell, "") + " " + data).split())


def _page(client, project: Project) -> _Page:
    response = client.get(_project_url(project))
    assert response.status_code == 200
    return _Page(response.content.decode())


def _press(client, page: _Page, api_key: APIKey, button: str):
    """Submits the form a key row's button belongs to, as a browser would."""
    form = page.forms[page.rows[str(api_key.pk)]["buttons"][button]]
    return client.post(form["action"], {"csrfmiddlewaretoken": form["csrf"]})


@pytest.fixture
def team(alice, bob):
    """alice's team project (she owns it), with bob as an editor."""
    project = project_services.project_create(name="Research", created_by=alice)
    project_services.member_add(project=project, user=bob, role=Role.EDITOR, acting_role=None)
    return project


@pytest.fixture
def carol(team):
    """A staff user who is not a superuser, with the admin's permissions on projects and keys, and an
    editor of the team: not enough to manage its keys."""
    user = UserFactory(username="carol", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="accounts",
            codename__in=["view_project", "change_project", "view_apikey", "add_apikey", "change_apikey"],
        )
    )
    project_services.member_add(project=team, user=user, role=Role.EDITOR, acting_role=None)
    return user


@pytest.fixture
def carol_client(carol) -> Client:
    client = Client()
    client.force_login(carol)
    return client


# --- the add-key link and the key made from it ---------------------------------------------------------


def test_add_key_link_fills_in_the_project_and_the_user_when_they_may_make_its_keys(admin_client, admin_user, team):
    outsider = _page(admin_client, team).links["add-api-key"]
    project_services.member_add(project=team, user=admin_user, role=Role.ADMIN, acting_role=None)
    member = _page(admin_client, team).links["add-api-key"]
    project_services.member_set_role(project=team, user=admin_user, role=Role.EDITOR, acting_role=None)
    editor = _page(admin_client, team).links["add-api-key"]

    assert urlsplit(outsider).path == "/admin/accounts/apikey/add/"
    # A superuser who is not a member: the creator is left to choose.
    assert parse_qs(urlsplit(outsider).query) == {"project": [str(team.pk)]}
    assert parse_qs(urlsplit(member).query) == {"project": [str(team.pk)], "created_by": [str(admin_user.pk)]}
    assert parse_qs(urlsplit(editor).query) == {"project": [str(team.pk)]}
    add_page = admin_client.get(member)
    assert add_page.status_code == 200
    form = add_page.context["adminform"].form
    assert (form.initial["project"], form.initial["created_by"]) == (str(team.pk), str(admin_user.pk))
    assert f'name="project" value="{team.pk}"' in add_page.content.decode()


def test_a_key_made_from_the_project_page_is_shown_once_and_only_its_hash_is_kept(admin_client, alice, team):
    add_url = _page(admin_client, team).links["add-api-key"]

    created = admin_client.post(
        add_url,
        {
            "project": str(team.pk),
            "created_by": str(alice.pk),
            "name": "ci",
            "expires_at_0": "",
            "expires_at_1": "",
            "scopes": ["runs:read", "prompts:read"],
        },
    )

    assert created.status_code == 200
    assert "no-store" in created["Cache-Control"]
    page = created.content.decode()
    match = PLAINTEXT.search(page)
    assert match is not None, page
    plaintext = match.group(1)
    prefix, secret = keys.split(plaintext)  # type: ignore[misc]
    assert page.count(plaintext) == 1
    assert _Page(page).links["back-to-project"] == _project_url(team)
    stored = APIKey.objects.get(prefix=prefix)
    assert (stored.project, stored.created_by, stored.scopes) == (team, alice, ["prompts:read", "runs:read"])
    assert stored.secret_hash == keys.hash_secret(secret)
    assert _works(plaintext)
    dump = StringIO()
    call_command("dumpdata", stdout=dump)  # every row: keys, sessions, messages, the admin log
    assert secret not in dump.getvalue()
    # Never again, on any page.
    for url in (
        _project_url(team),
        add_url,
        _key_url(stored, "change"),
        _key_url(stored, "history"),
        _key_url(stored, "rotate"),
        _key_url(stored, "revoke"),
        "/admin/accounts/apikey/",
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert secret not in response.content.decode(), url


def test_each_key_row_shows_its_scopes_limits_and_an_edit_link(admin_client, alice, team):
    api_key, _ = services.api_key_create(project=team, created_by=alice, name="limited", scopes=["runs:read"])
    APIKey.objects.filter(pk=api_key.pk).update(rate_limit="100/m", tokens_per_minute=500)

    row = _page(admin_client, team).rows[str(api_key.pk)]

    assert row["status"] == "active"
    assert row["key-scopes"] == "runs:read"
    assert row["key-limits"] == "requests 100/m; runs default; tokens/min 500"
    assert row["links"]["key-edit"] == _key_url(api_key, "change")


def test_the_key_page_edits_scopes_and_limits_through_their_validation(admin_client, alice, team):
    api_key, plaintext = services.api_key_create(project=team, created_by=alice, name="k", scopes=["runs:read"])
    url = _key_url(api_key, "change")
    data = {"name": "k", "expires_at_0": "", "expires_at_1": "", "rate_limit": "", "run_rate_limit": ""}

    refused = admin_client.post(
        url, {**data, "scopes": ["root"], "rate_limit": "fast", "run_rate_limit": "0/m", "tokens_per_minute": "-1"}
    )
    saved = admin_client.post(
        url,
        {**data, "scopes": ["runs:read", "prompts:read"], "rate_limit": "100/m", "tokens_per_minute": "500"},
    )

    assert refused.status_code == 200
    assert set(refused.context["adminform"].form.errors) == {
        "scopes",
        "rate_limit",
        "run_rate_limit",
        "tokens_per_minute",
    }
    assert saved.status_code == 302
    stored = APIKey.objects.get(pk=api_key.pk)
    # scopes_clean's order, the secret untouched.
    assert (stored.scopes, stored.rate_limit, stored.tokens_per_minute) == (["prompts:read", "runs:read"], "100/m", 500)
    assert stored.secret_hash == api_key.secret_hash
    assert _works(plaintext)


# --- revoke and rotate ----------------------------------------------------------------------------------


def test_the_row_buttons_are_post_forms_of_their_own_outside_the_projects_form(admin_client, alice, team):
    api_key, _ = services.api_key_create(project=team, created_by=alice, name="ci")

    page = _page(admin_client, team)

    buttons = page.rows[str(api_key.pk)]["buttons"]
    assert set(buttons) == {"key-rotate", "key-revoke"}
    assert page.forms[buttons["key-rotate"]]["action"] == _key_url(api_key, "rotate")
    assert page.forms[buttons["key-revoke"]]["action"] == _key_url(api_key, "revoke")
    for form_id in (buttons["key-rotate"], buttons["key-revoke"], "project_form"):
        assert page.forms[form_id]["method"] == "post"
        assert page.forms[form_id]["nested"] is False
        assert page.forms[form_id]["csrf"]


def test_revoke_asks_first_and_only_a_confirmed_post_revokes(admin_client, alice, team):
    api_key, plaintext = services.api_key_create(project=team, created_by=alice, name="ci")

    asked = _press(admin_client, _page(admin_client, team), api_key, "key-revoke")
    got = admin_client.get(_key_url(api_key, "revoke"), {"confirm": "yes"})

    for response in (asked, got):
        assert response.status_code == 200
        assert 'id="confirm-revoke"' in response.content.decode()
    assert APIKey.objects.get(pk=api_key.pk).status == "active"
    assert _works(plaintext)

    done = admin_client.post(_key_url(api_key, "revoke"), {"confirm": "yes"}, follow=True)

    assert done.redirect_chain == [(_project_url(team), 302)]
    assert _messages(done) == [f"Revoked {api_key}: it stopped working at once."]
    assert APIKey.objects.get(pk=api_key.pk).status == "revoked"
    assert not _works(plaintext)
    assert LogEntry.objects.filter(object_id=str(api_key.pk), change_message="Revoked.").exists()


def test_rotate_asks_for_the_grace_period_then_shows_the_new_key_once(admin_client, alice, team):
    api_key, old = services.api_key_create(project=team, created_by=alice, name="ci")

    asked = _press(admin_client, _page(admin_client, team), api_key, "key-rotate")
    got = admin_client.get(_key_url(api_key, "rotate"), {"confirm": "yes", "grace_seconds": "0"})

    for response in (asked, got):
        assert response.status_code == 200
        assert 'name="grace_seconds"' in response.content.decode()
        assert not ROTATED_PLAINTEXTS.findall(response.content.decode())
    assert APIKey.objects.get(pk=api_key.pk).secret_hash == api_key.secret_hash

    done = admin_client.post(_key_url(api_key, "rotate"), {"confirm": "yes", "grace_seconds": "0"})

    assert done.status_code == 200
    assert "no-store" in done["Cache-Control"]
    page = done.content.decode()
    [plaintext] = ROTATED_PLAINTEXTS.findall(page)
    assert keys.split(plaintext)[0] == api_key.prefix  # type: ignore[index]
    assert page.count(plaintext) == 1
    assert _Page(page).links["back-to-project"] == _project_url(team)
    assert _works(plaintext) and not _works(old)
    assert LogEntry.objects.filter(object_id=str(api_key.pk), change_message="Rotated the secret.").exists()
    secret = keys.split(plaintext)[1]  # type: ignore[index]
    for url in (_key_url(api_key, "rotate"), _project_url(team), _key_url(api_key, "change")):
        assert secret not in admin_client.get(url).content.decode(), url


def test_rotate_with_a_grace_period_keeps_the_old_secret_and_a_bad_one_asks_again(admin_client, alice, team):
    api_key, old = services.api_key_create(project=team, created_by=alice, name="ci")

    bad = admin_client.post(_key_url(api_key, "rotate"), {"confirm": "yes", "grace_seconds": "-5"})

    assert bad.status_code == 200
    assert "grace_seconds" in bad.context["form"].errors
    assert APIKey.objects.get(pk=api_key.pk).secret_hash == api_key.secret_hash

    done = admin_client.post(_key_url(api_key, "rotate"), {"confirm": "yes", "grace_seconds": "600"})

    [plaintext] = ROTATED_PLAINTEXTS.findall(done.content.decode())
    assert _works(plaintext) and _works(old)
    assert APIKey.objects.get(pk=api_key.pk).previous_secret_expires_at is not None


def test_the_views_need_the_csrf_token(admin_user, alice, team):
    api_key, plaintext = services.api_key_create(project=team, created_by=alice, name="ci")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    page = _page(client, team)  # sets the CSRF cookie

    forged = [
        client.post(_key_url(api_key, "revoke"), {"confirm": "yes"}),
        client.post(_key_url(api_key, "rotate"), {"confirm": "yes", "grace_seconds": "0"}),
    ]

    assert [response.status_code for response in forged] == [403, 403]
    stored = APIKey.objects.get(pk=api_key.pk)
    assert (stored.status, stored.secret_hash) == ("active", api_key.secret_hash)
    # The page's own forms carry the token.
    assert _press(client, page, api_key, "key-revoke").status_code == 200
    token = page.forms[page.rows[str(api_key.pk)]["buttons"]["key-revoke"]]["csrf"]
    confirmed = client.post(_key_url(api_key, "revoke"), {"confirm": "yes", "csrfmiddlewaretoken": token})
    assert confirmed.status_code == 302
    assert not _works(plaintext)


def test_a_revoked_key_shows_as_revoked_with_no_buttons_and_an_expired_one_can_only_be_revoked(
    admin_client, alice, team
):
    active, _ = services.api_key_create(project=team, created_by=alice, name="active")
    revoked, _ = services.api_key_create(project=team, created_by=alice, name="revoked")
    services.api_key_revoke(api_key=revoked)
    expired, _ = services.api_key_create(project=team, created_by=alice, name="expired")
    APIKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    page = _page(admin_client, team)

    assert page.rows[str(revoked.pk)]["status"] == "revoked"
    assert page.rows[str(revoked.pk)]["buttons"] == {}
    assert not any(str(revoked.pk) in form_id for form_id in page.forms)
    assert set(page.rows[str(expired.pk)]["buttons"]) == {"key-revoke"}
    assert set(page.rows[str(active.pk)]["buttons"]) == {"key-rotate", "key-revoke"}
    revoked_page = admin_client.get(_key_url(revoked, "change")).content.decode()
    active_page = admin_client.get(_key_url(active, "change")).content.decode()
    assert "key-rotate-link" not in revoked_page and "key-revoke-link" not in revoked_page
    assert 'id="key-rotate-link"' in active_page and 'id="key-revoke-link"' in active_page


def test_a_revoked_or_expired_key_posted_to_anyway_is_a_message_not_a_crash(admin_client, alice, team):
    revoked, _ = services.api_key_create(project=team, created_by=alice, name="revoked")
    services.api_key_revoke(api_key=revoked)
    expired, _ = services.api_key_create(project=team, created_by=alice, name="expired")
    APIKey.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    rotate_revoked = admin_client.post(
        _key_url(revoked, "rotate"), {"confirm": "yes", "grace_seconds": "0"}, follow=True
    )
    revoke_revoked = admin_client.post(_key_url(revoked, "revoke"), {"confirm": "yes"}, follow=True)
    rotate_expired = admin_client.post(
        _key_url(expired, "rotate"), {"confirm": "yes", "grace_seconds": "0"}, follow=True
    )
    missing = admin_client.post(f"/admin/accounts/apikey/{team.pk}/revoke/", {"confirm": "yes"}, follow=True)

    assert _messages(rotate_revoked) == [f"{revoked} is revoked; only active keys can be rotated."]
    assert _messages(revoke_revoked) == [f"{revoked} is revoked already."]
    assert _messages(rotate_expired) == [f"{expired} is expired; only active keys can be rotated."]
    assert _messages(missing) == ["No such API key: it may have been deleted."]
    for response in (rotate_revoked, revoke_revoked, rotate_expired, missing):
        assert response.status_code == 200
        assert not ROTATED_PLAINTEXTS.findall(response.content.decode())
    assert APIKey.objects.get(pk=revoked.pk).secret_hash == revoked.secret_hash
    assert APIKey.objects.get(pk=expired.pk).secret_hash == expired.secret_hash


# --- who may --------------------------------------------------------------------------------------------


def test_staff_who_are_not_admins_of_the_project_are_refused_with_a_message(carol_client, carol, alice, team):
    api_key, plaintext = services.api_key_create(project=team, created_by=alice, name="ci")
    refusal = f"Creating, rotating and revoking the API keys of {team} needs the admin role in it; you are editor."

    page = carol_client.get(_project_url(team))
    revoke = carol_client.post(_key_url(api_key, "revoke"), {"confirm": "yes"}, follow=True)
    rotate = carol_client.post(_key_url(api_key, "rotate"), {"confirm": "yes", "grace_seconds": "0"}, follow=True)
    asked = carol_client.get(_key_url(api_key, "rotate"), follow=True)
    add = carol_client.post(
        "/admin/accounts/apikey/add/",
        {
            "project": str(team.pk),
            "created_by": str(alice.pk),  # the owner: a valid creator, but carol may not act for her
            "name": "mine",
            "expires_at_0": "",
            "expires_at_1": "",
            "scopes": all_scopes(),
        },
    )

    assert page.status_code == 200
    assert re.search(rf'id="project-key-refusal"[^>]*>{re.escape(refusal)}</p>', page.content.decode())
    # No created_by for carol: she is not an admin.
    assert parse_qs(urlsplit(_Page(page.content.decode()).links["add-api-key"]).query) == {"project": [str(team.pk)]}
    for response in (revoke, rotate, asked):
        assert response.redirect_chain == [(_project_url(team), 302)]
        assert _messages(response) == [refusal]
    assert add.status_code == 200
    assert add.context["adminform"].form.errors["project"] == [refusal]
    stored = APIKey.objects.get(pk=api_key.pk)
    assert (stored.status, stored.secret_hash) == ("active", api_key.secret_hash)
    assert _works(plaintext)
    assert list(APIKey.objects.filter(project=team)) == [api_key]


def test_the_changelist_actions_leave_keys_of_projects_the_staff_user_does_not_admin(carol_client, carol, alice, team):
    theirs, plaintext = services.api_key_create(project=team, created_by=alice, name="team")
    own, own_plaintext = services.api_key_create(project=carol.personal_project, created_by=carol, name="own")

    response = carol_client.post(
        "/admin/accounts/apikey/",
        {"action": "revoke_selected", "_selected_action": [str(theirs.pk), str(own.pk)]},
        follow=True,
    )

    assert _messages(response) == [
        f"Left alone, as you are not an admin of their projects: {theirs}.",
        "Revoked 1 key(s).",
    ]
    assert _works(plaintext) and not _works(own_plaintext)


def test_staff_who_are_admins_of_the_project_may(carol_client, carol, team):
    project_services.member_set_role(project=team, user=carol, role=Role.ADMIN, acting_role=None)
    page = _page(carol_client, team)
    add_url = page.links["add-api-key"]

    assert parse_qs(urlsplit(add_url).query) == {"project": [str(team.pk)], "created_by": [str(carol.pk)]}
    created = carol_client.post(
        add_url,
        {
            "project": str(team.pk),
            "created_by": str(carol.pk),
            "name": "carol's",
            "expires_at_0": "",
            "expires_at_1": "",
            "scopes": ["runs:read"],
        },
    )
    match = PLAINTEXT.search(created.content.decode())
    assert match is not None
    api_key = APIKey.objects.get(project=team, created_by=carol)
    rotated = carol_client.post(_key_url(api_key, "rotate"), {"confirm": "yes", "grace_seconds": "0"})
    [new] = ROTATED_PLAINTEXTS.findall(rotated.content.decode())
    assert _works(new) and not _works(match.group(1))
    revoked = carol_client.post(_key_url(api_key, "revoke"), {"confirm": "yes"})
    assert revoked.status_code == 302
    assert not _works(new)


def test_staff_without_the_change_permission_get_no_buttons_and_403(carol_client, carol, alice, team):
    project_services.member_set_role(project=team, user=carol, role=Role.ADMIN, acting_role=None)
    carol.user_permissions.remove(*Permission.objects.filter(codename__in=["change_apikey", "add_apikey"]))
    api_key, _ = services.api_key_create(project=team, created_by=alice, name="ci")

    page = _page(carol_client, team)

    assert page.rows[str(api_key.pk)]["buttons"] == {}
    assert "add-api-key" not in page.links
    assert carol_client.post(_key_url(api_key, "revoke"), {"confirm": "yes"}).status_code == 403
    assert APIKey.objects.get(pk=api_key.pk).status == "active"


# --- budgets --------------------------------------------------------------------------------------------


def test_add_budget_link_fills_in_the_project_and_each_budget_has_an_edit_link(admin_client, team):
    add_url = _page(admin_client, team).links["add-budget"]

    assert urlsplit(add_url).path == "/admin/billing/budget/add/"
    assert parse_qs(urlsplit(add_url).query) == {"project": [str(team.pk)]}
    add_page = admin_client.get(add_url)
    assert add_page.status_code == 200
    assert add_page.context["adminform"].form.initial["project"] == str(team.pk)
    assert f'name="project" value="{team.pk}"' in add_page.content.decode()

    saved = admin_client.post(add_url, {"project": str(team.pk), "api_key": "", "amount": "20", "window": "month"})

    assert saved.status_code == 302
    budget = Budget.objects.get(project=team)
    rows = _page(admin_client, team).budget_rows
    assert rows == {str(budget.pk): {"edit": f"/admin/billing/budget/{budget.pk}/change/"}}
    assert admin_client.get(rows[str(budget.pk)]["edit"]).status_code == 200
