"""The API key admin: the plaintext is shown once, on the page after saving, and never again."""

import re
from io import StringIO

from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts import keys, services
from accounts.models import APIKey, all_scopes

ADD_URL = "/admin/accounts/apikey/add/"
CHANGELIST_URL = "/admin/accounts/apikey/"
PLAINTEXT = re.compile(r'<code id="api-key-plaintext"[^>]*>([^<]+)</code>')


def _add_key(admin_client, user, name="from-admin"):
    return admin_client.post(
        ADD_URL,
        {
            "project": str(user.personal_project.pk),
            "created_by": str(user.pk),
            "name": name,
            "expires_at_0": "",
            "expires_at_1": "",
            "scopes": all_scopes(),
        },
    )


def test_add_form_creates_a_key_and_shows_the_plaintext_once(admin_client, alice):
    response = _add_key(admin_client, alice)

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    match = PLAINTEXT.search(page)
    assert match is not None, page
    plaintext = match.group(1)
    parts = keys.split(plaintext)
    assert parts is not None
    prefix, secret = parts
    stored = APIKey.objects.get(created_by=alice)
    assert stored.name == "from-admin"
    assert stored.prefix == prefix
    assert stored.secret_hash == keys.hash_secret(secret)
    assert page.count(plaintext) == 1
    assert APIClient().get("/api/v1/keys", HTTP_AUTHORIZATION=f"Bearer {plaintext}").status_code == 200


def test_admin_created_key_leaves_no_secret_in_the_database(admin_client, alice):
    match = PLAINTEXT.search(_add_key(admin_client, alice).content.decode())
    assert match is not None
    plaintext = match.group(1)
    secret = plaintext.split(".")[1]

    dump = StringIO()
    call_command("dumpdata", stdout=dump)  # includes sessions and the admin log

    assert secret not in dump.getvalue()
    stored = APIKey.objects.get(created_by=alice)
    assert LogEntry.objects.get(object_id=str(stored.pk)).object_repr == str(stored)


def test_change_page_and_changelist_never_show_the_secret(admin_client, alice):
    api_key, plaintext = services.api_key_create(project=alice.personal_project, created_by=alice, name="hidden")
    secret = plaintext.split(".")[1]

    change = admin_client.get(f"/admin/accounts/apikey/{api_key.pk}/change/")
    changelist = admin_client.get(CHANGELIST_URL)

    for response in (change, changelist):
        assert response.status_code == 200
        page = response.content.decode()
        assert api_key.prefix in page
        assert secret not in page
        assert api_key.secret_hash not in page
    assert "secret_hash" not in change.content.decode()


def test_change_page_saves_the_name_without_touching_the_secret(admin_client, alice):
    api_key, plaintext = services.api_key_create(project=alice.personal_project, created_by=alice, name="before")

    response = admin_client.post(
        f"/admin/accounts/apikey/{api_key.pk}/change/",
        {"name": "after", "expires_at_0": "", "expires_at_1": "", "scopes": all_scopes()},
    )

    assert response.status_code == 302
    stored = APIKey.objects.get(pk=api_key.pk)
    assert stored.name == "after"
    assert stored.secret_hash == api_key.secret_hash
    assert services.api_key_authenticate(raw_key=plaintext) == stored


def test_revoke_action_revokes_the_selected_keys(admin_client, alice):
    kept, _ = services.api_key_create(project=alice.personal_project, created_by=alice, name="kept")
    revoked, plaintext = services.api_key_create(project=alice.personal_project, created_by=alice, name="revoked")

    response = admin_client.post(CHANGELIST_URL, {"action": "revoke_selected", "_selected_action": [str(revoked.pk)]})

    assert response.status_code == 302
    assert APIKey.objects.get(pk=revoked.pk).status == "revoked"
    assert APIKey.objects.get(pk=kept.pk).status == "active"
    assert APIClient().get("/api/v1/keys", HTTP_X_API_KEY=plaintext).status_code == 401


def test_add_form_with_a_past_expiry_is_a_form_error_not_a_crash(admin_client, alice):
    response = admin_client.post(
        ADD_URL,
        {
            "project": str(alice.personal_project.pk),
            "created_by": str(alice.pk),
            "name": "old",
            "expires_at_0": "2001-01-01",
            "expires_at_1": "00:00:00",
            "scopes": all_scopes(),
        },
    )

    assert response.status_code == 200
    assert set(response.context["adminform"].form.errors) == {"expires_at"}
    assert not PLAINTEXT.search(response.content.decode())
    assert not APIKey.objects.exists()
