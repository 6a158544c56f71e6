"""`manage.py provider set|list` and the provider_set service behind it."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from llmops.errors import ValidationFailed
from providers.models import Provider
from providers.services import provider_set

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = StringIO()
    call_command("provider", *args, stdout=out)
    return out.getvalue()


def test_set_creates_then_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_KEY", "sk-do-not-print-me")

    created = _run(
        "set", "vllm", "--kind", "openai-compatible", "--base-url", "http://vllm:8000/v1",
        "--api-key-env", "VLLM_KEY", "--timeout", "30",
    )  # fmt: skip

    assert "Created provider 'vllm'" in created
    provider = Provider.objects.get(name="vllm")
    assert (provider.kind, provider.base_url, provider.api_key_env, provider.timeout, provider.enabled) == (
        "openai-compatible",
        "http://vllm:8000/v1",  # a compose service name, without a dot, is accepted
        "VLLM_KEY",
        30.0,
        True,
    )
    assert "$VLLM_KEY (set)" in created
    assert "sk-do-not-print-me" not in created

    updated = _run("set", "vllm", "--disable", "--timeout", "12.5")

    assert "Updated provider 'vllm'" in updated
    provider.refresh_from_db()
    assert (provider.enabled, provider.timeout, provider.base_url) == (False, 12.5, "http://vllm:8000/v1")
    assert Provider.objects.count() == 1
    assert "sk-do-not-print-me" not in updated


def test_hf_inference_needs_no_base_url() -> None:
    out = _run("set", "hf", "--kind", "hf-inference", "--api-key-env", "HF_TOKEN")

    assert "Created provider 'hf'" in out
    assert Provider.objects.get(name="hf").base_url == ""


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["set", "x", "--kind", "openai-compatible"], "base_url"),
        (["set", "x", "--kind", "openai-compatible", "--base-url", "ftp://h/v1"], "base_url"),
        (["set", "x", "--kind", "openai-compatible", "--base-url", "not a url"], "base_url"),
        (["set", "x", "--kind", "openai-compatible", "--base-url", "http://u:sk-abc@h/v1"], "base_url"),
        (["set", "x", "--kind", "hf-inference", "--api-key-env", "MY-KEY"], "api_key_env"),
        (["set", "x", "--kind", "hf-inference", "--api-key-env", "sk-abc123"], "api_key_env"),
        (["set", "x", "--kind", "hf-inference", "--timeout", "0"], "timeout"),
        (["set", "x", "--base-url", "http://h/v1"], "kind"),
        (["set", "Bad Name", "--kind", "hf-inference"], "name"),
    ],
)
def test_set_refuses_invalid_input(args: list[str], problem: str) -> None:
    with pytest.raises(CommandError) as info:
        _run(*args)

    assert problem in str(info.value)
    assert Provider.objects.count() == 0


def test_invalid_key_variable_is_not_echoed_back() -> None:
    # Someone pasting the key itself instead of a variable name must not see it printed.
    with pytest.raises(CommandError) as info:
        _run("set", "x", "--kind", "hf-inference", "--api-key-env", "sk-live-abcdef")

    assert "sk-live-abcdef" not in str(info.value)
    assert "environment variable name" in str(info.value)


def test_a_bare_host_name_is_accepted_by_the_model_validation_too() -> None:
    # The rules live on the model, so the admin form (which runs them) agrees with the command.
    provider = Provider(name="ollama", kind="openai-compatible", base_url="http://ollama:11434/v1", api_key_env="")

    provider.full_clean(validate_unique=False)


def test_update_keeps_unchanged_fields_and_validates_the_result() -> None:
    provider_set(name="p", kind="openai-compatible", base_url="http://127.0.0.1:9/v1", api_key_env="K", timeout=5)

    with pytest.raises(ValidationFailed) as info:
        provider_set(name="p", base_url="")  # clearing the URL of an openai-compatible provider

    assert "base_url" in info.value.fields
    provider = Provider.objects.get(name="p")
    assert (provider.base_url, provider.api_key_env, provider.timeout) == ("http://127.0.0.1:9/v1", "K", 5.0)


def test_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISSING_KEY", raising=False)
    assert "No providers" in _run("list")
    provider_set(name="local", kind="openai-compatible", base_url="http://127.0.0.1:8011/v1")
    provider_set(name="hf", kind="hf-inference", api_key_env="MISSING_KEY", enabled=False)

    lines = _run("list").splitlines()

    assert [line.split()[0] for line in lines] == ["hf", "local"]
    assert "$MISSING_KEY (NOT set)" in lines[0]
    assert "disabled" in lines[0]
    assert "http://127.0.0.1:8011/v1" in lines[1]
    assert "no key" in lines[1]
