"""Owner isolation: bob gets 404 (never 403, never data) for everything of alice's, on every endpoint.

`test_every_endpoint_is_covered` walks the URL configuration, so a new prompts or accounts endpoint
fails here until it is added to the table below.
"""

from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from accounts import services as account_services
from accounts.models import APIKey
from llmops.tests.helpers import assert_error
from prompts import services
from prompts.models import LabelMove, Prompt, PromptLabel, PromptVersion
from prompts.tests.factories import prompt_with_version

VERSION_BODY = {"template": "Bob was here {{ name }}", "variables": {"name": {}}, "model": "local/smollm2"}

# (url name, method, path under /api/v1/ with {ref}, body, alice's status for the same request)
OBJECT_ENDPOINTS: list[tuple[str, str, str, Any, int]] = [
    ("prompt-detail", "get", "prompts/{ref}", None, 200),
    ("prompt-detail", "patch", "prompts/{ref}", {"description": "bob's now"}, 200),
    ("prompt-detail", "delete", "prompts/{ref}", None, 204),
    ("prompt-version-list", "get", "prompts/{ref}/versions", None, 200),
    ("prompt-version-list", "post", "prompts/{ref}/versions", VERSION_BODY, 201),
    ("prompt-version-detail", "get", "prompts/{ref}/versions/1", None, 200),
    ("prompt-labels", "get", "prompts/{ref}/labels", None, 200),
    ("prompt-move-label", "put", "prompts/{ref}/labels/production", {"version": 2}, 200),
    ("prompt-render", "post", "prompts/{ref}/render", {"variables": {"name": "Bob"}}, 200),
    ("prompt-resolve", "get", "prompts/{ref}/resolve?label=production", None, 200),
]
# Endpoints that take no object of someone else: checked by the list tests below.
LIST_ENDPOINTS = {("prompt-list", "get"), ("prompt-list", "post"), ("apikey-list", "get"), ("apikey-list", "post")}
KEY_ENDPOINTS = {("apikey-detail", "delete"), ("apikey-rotate", "post")}  # rotate: accounts/tests/test_rotation.py
# Owner isolation of webhook endpoints: accounts/tests/test_webhooks.py.
WEBHOOK_ENDPOINTS = {
    ("webhookendpoint-list", "get"),
    ("webhookendpoint-list", "post"),
    ("webhookendpoint-detail", "get"),
    ("webhookendpoint-detail", "patch"),
    ("webhookendpoint-detail", "delete"),
    ("webhookendpoint-deliveries", "get"),
}


_APPS = ("prompts", "accounts", "webhooks")


def _api_endpoints(patterns=None) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            found |= _api_endpoints(pattern.url_patterns)
        elif isinstance(pattern, URLPattern) and pattern.callback.__module__.split(".")[0] in _APPS:
            actions = getattr(pattern.callback, "actions", {})
            # HEAD is GET without a body; DRF maps it wherever GET is.
            found |= {(str(pattern.name), method) for method in actions if method != "head"}
    return found


# Projects and their members: every operation, for members of other projects and their keys, is in
# llmops/tests/test_access_matrix.py (404 for both).
PROJECT_ENDPOINTS = {
    ("project-list", "get"),
    ("project-list", "post"),
    ("project-detail", "get"),
    ("project-detail", "patch"),
    ("project-detail", "delete"),
    ("project-member-list", "get"),
    ("project-member-list", "post"),
    ("project-member-detail", "patch"),
    ("project-member-detail", "delete"),
}


def test_every_endpoint_is_covered():
    covered = (
        {(name, method) for name, method, *_ in OBJECT_ENDPOINTS}
        | LIST_ENDPOINTS
        | KEY_ENDPOINTS
        | WEBHOOK_ENDPOINTS
        | PROJECT_ENDPOINTS
    )

    assert _api_endpoints() == covered


@pytest.fixture
def alices_prompt(alice):
    prompt, _ = prompt_with_version(alice, name="alices-secret-plan", description="Alice's private notes.")
    services.prompt_version_create(
        prompt=prompt, created_by=alice, model="local/smollm2", template="v2 {{ name }}", variables={"name": {}}
    )
    services.label_move(prompt=prompt, label="production", version_number=1, moved_by=alice)
    return prompt


def _snapshot(prompt: Prompt) -> dict[str, Any]:
    return {
        "prompt": Prompt.objects.filter(pk=prompt.pk).values().get(),
        "versions": list(PromptVersion.objects.filter(prompt=prompt).order_by("number").values()),
        "labels": list(PromptLabel.objects.filter(prompt=prompt).values()),
        "moves": list(LabelMove.objects.filter(prompt=prompt).order_by("created_at").values()),
    }


def _call(client, method, path, body):
    return (
        getattr(client, method)(f"/api/v1/{path}", body, format="json")
        if body is not None
        else getattr(client, method)(f"/api/v1/{path}")
    )


@pytest.mark.parametrize("by", ["id", "name"])
@pytest.mark.parametrize(("name", "method", "path", "body", "alice_status"), OBJECT_ENDPOINTS, ids=lambda v: str(v))
def test_bob_gets_404_for_alices_prompt(
    alice_client, bob_client, alices_prompt, by, name, method, path, body, alice_status
):
    ref = str(alices_prompt.pk) if by == "id" else alices_prompt.name
    before = _snapshot(alices_prompt)

    response = _call(bob_client, method, path.format(ref=ref), body)

    error = assert_error(response, 404, "not_found")
    assert error["fields"] == {}
    content = response.content.decode()
    for secret in ("Alice's private notes", "Say hello to", "v2 ", "production", str(alices_prompt.pk)):
        assert secret not in content
    assert _snapshot(alices_prompt) == before
    assert not PromptVersion.objects.filter(template__startswith="Bob was here").exists()
    # The same request is fine for the owner, so the 404 above is the ownership check.
    assert _call(alice_client, method, path.format(ref=ref), body).status_code == alice_status


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "prompts/{ref}/versions"), ("put", "prompts/{ref}/labels/production"), ("post", "prompts/{ref}/render")],
)
def test_bob_gets_404_not_400_for_an_invalid_body(bob_client, alices_prompt, method, path):
    """Validation must not run before the ownership check, or a 400 would reveal that the prompt exists."""
    response = _call(bob_client, method, path.format(ref=alices_prompt.name), {"nonsense": True})

    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("query", ["label=production&version=1", "version=0", "label=no-such-label", "version=9"])
def test_bob_gets_404_not_400_for_an_invalid_resolve_query(bob_client, alices_prompt, query):
    """As for bodies: the prompt is looked up first, whatever the query asks."""
    response = bob_client.get(f"/api/v1/prompts/{alices_prompt.name}/resolve?{query}")

    assert assert_error(response, 404, "not_found")["fields"] == {}


def test_bob_with_a_same_named_prompt_only_ever_sees_his_own(bob_client, bob, alices_prompt):
    bobs_prompt, _ = prompt_with_version(bob, name=alices_prompt.name, template="Bob's {{ name }}")

    response = bob_client.get(f"/api/v1/prompts/{alices_prompt.name}")
    versions = bob_client.get(f"/api/v1/prompts/{alices_prompt.name}/versions")

    assert response.json()["id"] == str(bobs_prompt.pk)
    assert response.json()["latest_version"] == 1
    assert [v["template"] for v in versions.json()["results"]] == ["Bob's {{ name }}"]
    assert_error(bob_client.get(f"/api/v1/prompts/{alices_prompt.pk}"), 404)


def test_prompt_lists_show_only_own_prompts(alice_client, bob_client, alice, bob, alices_prompt):
    prompt_with_version(bob, name="bobs-prompt")
    archived, _ = prompt_with_version(alice, name="alices-archived")
    services.prompt_archive(prompt=archived)

    alice_names = [p["name"] for p in alice_client.get("/api/v1/prompts", {"include_archived": "1"}).json()["results"]]
    bob_names = [p["name"] for p in bob_client.get("/api/v1/prompts", {"include_archived": "1"}).json()["results"]]

    assert alice_names == ["alices-archived", "alices-secret-plan"]
    assert bob_names == ["bobs-prompt"]


def test_created_prompts_belong_to_the_caller(bob_client, bob, alice):
    response = bob_client.post(
        "/api/v1/prompts", {"name": "mine", **VERSION_BODY, "owner": str(alice.pk)}, format="json"
    )

    assert_error(response, 400, fields={"owner"})  # no way to create for someone else
    assert not Prompt.objects.filter(project=alice.personal_project).exists()


def test_bob_cannot_revoke_or_list_alices_key(bob_client, alice):
    alice_key, _ = account_services.api_key_create(project=alice.personal_project, created_by=alice, name="alices-key")

    response = bob_client.delete(f"/api/v1/keys/{alice_key.pk}")
    listed = bob_client.get("/api/v1/keys").json()["results"]

    assert_error(response, 404, "not_found")
    assert APIKey.objects.get(pk=alice_key.pk).is_active is True
    assert str(alice_key.pk) not in {row["id"] for row in listed}
    assert "alices-key" not in {row["name"] for row in listed}
