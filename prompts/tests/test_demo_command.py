"""`manage.py demo`: what it creates, what it prints, and that running it again is safe."""

import hashlib
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import APIKey, User
from prompts import services
from prompts.models import LabelMove, Prompt, PromptLabel, PromptVersion

PASSWORD = "a-test-demo-password"
KEY_LINE = re.compile(r"^\s*API key:\s+(?P<key>(?P<prefix>llmk_[0-9a-f]+)\.(?P<secret>\S+))\s*$", re.MULTILINE)

pytestmark = pytest.mark.django_db


def run_demo(*args: str) -> str:
    out = StringIO()
    call_command("demo", *args, stdout=out)
    return out.getvalue()


def printed_key(output: str) -> re.Match[str]:
    match = KEY_LINE.search(output)
    assert match is not None, output
    return match


def test_creates_staff_superuser_key_prompt_and_label():
    output = run_demo("--password", PASSWORD)

    user = User.objects.get(username="demo")
    assert user.is_staff and user.is_superuser and user.is_active
    assert user.check_password(PASSWORD)

    key = printed_key(output)
    api_key = APIKey.objects.get(user=user)
    assert api_key.prefix == key["prefix"]
    # Only the hash of the secret is stored, never the plaintext.
    assert api_key.secret_hash == hashlib.sha256(key["secret"].encode()).hexdigest()
    assert key["secret"] not in api_key.secret_hash

    prompt = Prompt.objects.get(owner=user, name="greet")
    version = PromptVersion.objects.get(prompt=prompt)
    assert (prompt.latest_version_number, version.number) == (1, 1)
    assert version.kind == PromptVersion.Kind.CHAT
    assert version.messages == [
        {"role": "system", "content": "You are a helpful, concise assistant."},
        {"role": "user", "content": "Say hello to {{ name }} in one short sentence."},
    ]
    assert version.variables == {"name": {"type": "string", "required": False, "default": "world"}}
    assert version.model == "local/smollm2"
    assert version.params == {"max_tokens": 48, "temperature": 0.2}
    assert PromptLabel.objects.get(prompt=prompt, name="production").version == version
    assert LabelMove.objects.filter(prompt=prompt, label="production", to_version=version).count() == 1


def test_prints_admin_credentials_and_curl_examples():
    output = run_demo("--password", PASSWORD)
    key = printed_key(output)["key"]

    assert "http://127.0.0.1:8000/admin/" in output
    assert re.search(r"Username:\s+demo\b", output)
    assert re.search(rf"Password:\s+{PASSWORD}$", output, re.MULTILINE)
    assert "curl -s http://127.0.0.1:8000/api/v1/prompts \\\n" in output
    assert f"-H 'Authorization: Bearer {key}'" in output
    assert "curl -s -X POST http://127.0.0.1:8000/api/v1/prompts/greet/render" in output
    assert """-d '{"label":"production","variables":{"name":"Ada"}}'""" in output
    assert "curl -s -X POST 'http://127.0.0.1:8000/api/v1/runs?wait=30'" in output
    assert """-d '{"prompt":"greet","variables":{"name":"Ada"}}'""" in output


def test_printed_key_renders_the_prompt_through_the_api():
    key = printed_key(run_demo("--password", PASSWORD))["key"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    response = client.post(
        "/api/v1/prompts/greet/render", {"label": "production", "variables": {"name": "Ada"}}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json()["version"] == 1
    assert response.json()["messages"][1] == {"role": "user", "content": "Say hello to Ada in one short sentence."}


def test_rerun_keeps_user_and_prompt_and_adds_a_new_key():
    first = printed_key(run_demo("--password", PASSWORD))
    user = User.objects.get(username="demo")
    prompt = Prompt.objects.get(owner=user, name="greet")

    second = printed_key(run_demo("--password", PASSWORD))

    assert User.objects.filter(username="demo").count() == 1
    assert User.objects.get(username="demo").pk == user.pk
    assert Prompt.objects.filter(name="greet").count() == 1
    assert Prompt.objects.get(name="greet").pk == prompt.pk
    assert PromptVersion.objects.filter(prompt=prompt).count() == 1
    assert PromptLabel.objects.filter(prompt=prompt).count() == 1
    assert LabelMove.objects.filter(prompt=prompt).count() == 1
    # Plaintext keys are never stored, so each run must hand out a new one; the old one keeps working.
    assert second["key"] != first["key"]
    assert set(APIKey.objects.filter(user=user).values_list("prefix", flat=True)) == {
        first["prefix"],
        second["prefix"],
    }


def test_rerun_leaves_a_moved_label_alone():
    run_demo("--password", PASSWORD)
    user = User.objects.get(username="demo")
    prompt = Prompt.objects.get(owner=user, name="greet")
    services.prompt_version_create(
        prompt=prompt, created_by=user, template="Hi {{ name }}", variables={"name": {}}, model="local/smollm2"
    )
    services.label_move(prompt=prompt, label="production", version_number=2, moved_by=user)

    output = run_demo("--password", PASSWORD)

    assert PromptLabel.objects.get(prompt=prompt, name="production").version.number == 2
    assert PromptVersion.objects.filter(prompt=prompt).count() == 2
    assert "production -> v2" in output


def test_rerun_repairs_an_existing_demo_user():
    User.objects.create_user(username="demo", password="something-else-entirely")

    run_demo("--password", PASSWORD)

    user = User.objects.get(username="demo")
    assert user.is_staff and user.is_superuser
    assert user.check_password(PASSWORD)


def test_password_from_environment(monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "from-the-environment-1")

    output = run_demo()

    assert User.objects.get(username="demo").check_password("from-the-environment-1")
    assert "from-the-environment-1" in output


def test_default_password_in_debug(settings, monkeypatch):
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    settings.DEBUG = True

    run_demo()

    assert User.objects.get(username="demo").check_password("demo-password-change-me")


def test_default_password_refused_outside_debug(settings, monkeypatch):
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    settings.DEBUG = False

    with pytest.raises(CommandError, match="DEBUG is off"):
        run_demo()

    assert not User.objects.filter(username="demo").exists()
    assert not Prompt.objects.exists()
