"""`manage.py demo`: what it creates, what it prints, and that running it again is safe."""

import hashlib
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts import services as account_services
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
    api_key = APIKey.objects.get(created_by=user)
    assert api_key.prefix == key["prefix"]
    # Only the hash of the secret is stored, never the plaintext.
    assert api_key.secret_hash == hashlib.sha256(key["secret"].encode()).hexdigest()
    assert key["secret"] not in api_key.secret_hash

    prompt = Prompt.objects.get(project=user.personal_project, name="greet")
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


def _status(key: str) -> int:
    return APIClient().get("/api/v1/prompts", HTTP_AUTHORIZATION=f"Bearer {key}").status_code


def test_rerun_keeps_user_prompt_and_key_and_gives_the_key_a_new_secret():
    first = printed_key(run_demo("--password", PASSWORD))
    user = User.objects.get(username="demo")
    prompt = Prompt.objects.get(project=user.personal_project, name="greet")
    demo_key = APIKey.objects.get(created_by=user)

    output = run_demo("--password", PASSWORD)
    second = printed_key(output)

    assert User.objects.filter(username="demo").count() == 1
    assert User.objects.get(username="demo").pk == user.pk
    assert Prompt.objects.filter(name="greet").count() == 1
    assert Prompt.objects.get(name="greet").pk == prompt.pk
    assert PromptVersion.objects.filter(prompt=prompt).count() == 1
    assert PromptLabel.objects.filter(prompt=prompt).count() == 1
    assert LabelMove.objects.filter(prompt=prompt).count() == 1
    # One key, rotated: same row and prefix (so its scopes, limits and budgets stay), a new secret.
    assert list(APIKey.objects.filter(created_by=user).values_list("pk", flat=True)) == [demo_key.pk]
    assert second["prefix"] == first["prefix"] == demo_key.prefix
    assert second["secret"] != first["secret"]
    assert "the one printed before no longer works" in output
    # Only the key just printed works.
    assert _status(first["key"]) == 401
    assert _status(second["key"]) == 200


def test_rerun_revokes_the_demo_keys_left_by_earlier_versions():
    """Earlier versions of the command created a key on every run and left them all active."""
    run_demo("--password", PASSWORD)
    user = User.objects.get(username="demo")
    leftovers = [
        account_services.api_key_create(project=user.personal_project, created_by=user, name="demo") for _ in range(2)
    ]
    mine, mine_plaintext = account_services.api_key_create(
        project=user.personal_project, created_by=user, name="my own key"
    )

    output = run_demo("--password", PASSWORD)
    printed = printed_key(output)

    active_demo = APIKey.objects.filter(created_by=user, name="demo", is_active=True)
    assert list(active_demo.values_list("prefix", flat=True)) == [printed["prefix"]]
    assert printed["prefix"] == leftovers[-1][0].prefix  # the newest is the one kept, with a new secret
    assert APIKey.objects.filter(created_by=user, name="demo", is_active=False).count() == 2
    assert "2 older demo key(s) revoked" in output
    assert [_status(plaintext) for _, plaintext in leftovers] == [401, 401]
    assert _status(printed["key"]) == 200
    # A key of the demo user's that the command did not make is left alone.
    assert APIKey.objects.get(pk=mine.pk).is_active
    assert _status(mine_plaintext) == 200


def test_rerun_after_the_demo_key_was_revoked_creates_one():
    first = printed_key(run_demo("--password", PASSWORD))
    revoked = APIKey.objects.get(prefix=first["prefix"])
    account_services.api_key_revoke(api_key=revoked)

    second = printed_key(run_demo("--password", PASSWORD))

    assert second["prefix"] != first["prefix"]
    assert not APIKey.objects.get(pk=revoked.pk).is_active  # a revocation is never undone
    assert _status(first["key"]) == 401
    assert _status(second["key"]) == 200


def test_rerun_leaves_a_moved_label_alone():
    run_demo("--password", PASSWORD)
    user = User.objects.get(username="demo")
    prompt = Prompt.objects.get(project=user.personal_project, name="greet")
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


@pytest.mark.parametrize("_local_provider", [None])  # no `local` provider yet, as on a fresh install
def test_registers_the_local_provider_its_prompt_names_when_missing(_local_provider):
    from providers.models import Provider

    assert not Provider.objects.filter(name="local").exists()

    run_demo("--password", PASSWORD)

    provider = Provider.objects.get(name="local")
    assert (provider.kind, provider.base_url) == ("openai-compatible", "http://127.0.0.1:8011/v1")
    assert provider.enabled


def test_leaves_an_existing_local_provider_where_it_points():
    from providers.models import Provider

    Provider.objects.filter(name="local").update(base_url="http://10.0.0.5:9000/v1")

    run_demo("--password", PASSWORD)

    assert Provider.objects.get(name="local").base_url == "http://10.0.0.5:9000/v1"
