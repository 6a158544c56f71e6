from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts import keys
from accounts.models import APIKey


def test_createapikey_prints_a_working_key(alice):
    out, err = StringIO(), StringIO()

    call_command("createapikey", "alice", "--name", "laptop", stdout=out, stderr=err)

    plaintext = out.getvalue().strip()
    parts = keys.split(plaintext)
    assert parts is not None
    prefix, secret = parts
    stored = APIKey.objects.get(created_by=alice, project=alice.personal_project)
    assert stored.name == "laptop"
    assert stored.prefix == prefix
    assert prefix in err.getvalue()
    assert secret not in err.getvalue()
    response = APIClient().get("/api/v1/keys", HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert response.status_code == 200
    assert [row["name"] for row in response.json()["results"]] == ["laptop"]


def test_createapikey_fails_cleanly_for_an_unknown_user(db):
    out = StringIO()

    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("createapikey", "nobody", stdout=out, stderr=StringIO())

    assert out.getvalue() == ""
    assert not APIKey.objects.exists()
