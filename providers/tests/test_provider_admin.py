"""The provider admin: the same validation as `manage.py provider set` (one set of rules, on the model),
saved through providers.services.provider_set, and a pasted key never sent back."""

from typing import Any

import pytest

from providers import admin as providers_admin
from providers.models import Provider
from providers.services import provider_set

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/providers/provider/add/"
PASTED_KEY = "sk-live-3f9a8b7c6d5e4f3a2b1c"


def _form(**fields: Any) -> dict[str, Any]:
    data = {"name": "vllm", "kind": "openai-compatible", "base_url": "", "api_key_env": "", "timeout": "60"}
    data.update(fields)
    if data.pop("enabled", True):
        data["enabled"] = "on"
    return data


@pytest.fixture
def service_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def recording(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return provider_set(**kwargs)

    monkeypatch.setattr(providers_admin, "provider_set", recording)
    return calls


def test_add_accepts_a_compose_service_name_and_saves_through_the_service(admin_client, service_calls):
    response = admin_client.post(ADD_URL, _form(base_url="http://vllm:8000/v1", api_key_env="VLLM_KEY"))

    assert response.status_code == 302, response.content.decode()
    provider = Provider.objects.get(name="vllm")
    assert (provider.kind, provider.base_url, provider.api_key_env) == (
        "openai-compatible",
        "http://vllm:8000/v1",
        "VLLM_KEY",
    )
    assert [call["name"] for call in service_calls] == ["vllm"]
    change = admin_client.get(f"/admin/providers/provider/{provider.pk}/change/")
    assert change.status_code == 200
    assert "http://vllm:8000/v1" in change.content.decode()


def test_a_pasted_key_is_refused_and_not_sent_back(admin_client, service_calls):
    response = admin_client.post(ADD_URL, _form(kind="hf-inference", api_key_env=PASTED_KEY))

    assert response.status_code == 200  # the form again, with the error
    page = response.content.decode()
    assert "Must be an environment variable name" in page
    assert PASTED_KEY not in page
    assert response.context["adminform"].form.errors["api_key_env"]
    assert not Provider.objects.exists()
    assert service_calls == []


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"base_url": ""}, "base_url"),
        ({"base_url": "ftp://h/v1"}, "base_url"),
        ({"base_url": "not a url"}, "base_url"),
        ({"base_url": "http://h:port/v1"}, "base_url"),
        ({"base_url": "http://user:sk-abc@h/v1"}, "base_url"),
        ({"base_url": "http://h/v1", "api_key_env": "1KEY"}, "api_key_env"),
        ({"base_url": "http://h/v1", "api_key_env": "MY-KEY"}, "api_key_env"),
        ({"base_url": "http://h/v1", "timeout": "0"}, "timeout"),
        ({"base_url": "http://h/v1", "name": "Bad Name"}, "name"),
    ],
)
def test_admin_and_service_refuse_the_same_input(admin_client, fields, problem):
    data = _form(**fields)
    response = admin_client.post(ADD_URL, data)

    assert response.status_code == 200
    assert problem in response.context["adminform"].form.errors
    with pytest.raises(Exception) as info:
        provider_set(
            name=data["name"],
            kind=data["kind"],
            base_url=data["base_url"],
            api_key_env=data["api_key_env"],
            timeout=float(data["timeout"]),
        )
    assert problem in info.value.fields  # type: ignore[attr-defined]
    assert not Provider.objects.exists()


def test_change_goes_through_the_service_and_keeps_the_name(admin_client, service_calls):
    provider, _ = provider_set(name="local", kind="openai-compatible", base_url="http://127.0.0.1:8011/v1")

    response = admin_client.post(
        f"/admin/providers/provider/{provider.pk}/change/",
        _form(name="renamed", base_url="http://llama:8011/v1", timeout="12.5", enabled=False),
    )

    assert response.status_code == 302, response.content.decode()
    provider.refresh_from_db()
    assert (provider.name, provider.base_url, provider.timeout, provider.enabled) == (
        "local",  # read-only: versions name the provider in their model string
        "http://llama:8011/v1",
        12.5,
        False,
    )
    assert Provider.objects.count() == 1
    assert [call["name"] for call in service_calls] == ["local"]
