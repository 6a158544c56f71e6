"""Key scopes: every API endpoint declares one, a key needs it, a staff session has them all.

The tests that walk the URL configuration cover endpoints added later without edits here: a new
endpoint without a declared scope, or one that is not enforced, fails them.
"""

import json
import re
import uuid
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from drf_spectacular.generators import SchemaGenerator
from rest_framework import permissions
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate
from rest_framework.views import APIView
from rest_framework.viewsets import ViewSet

from accounts import services
from accounts.models import APIKey, Scope, all_scopes
from accounts.permissions import HasScope
from llmops.errors import ValidationFailed
from llmops.tests.helpers import assert_error
from prompts.models import LabelMove, Prompt, PromptLabel, PromptVersion
from prompts.tests.factories import prompt_with_version

KEYS_URL = "/api/v1/keys"
# A value for each URL keyword argument, to reach an endpoint without creating its object: the scope
# is checked before any lookup. A new keyword needs a sample here.
URL_KWARG_SAMPLES = {
    "ref": "no-such-prompt",
    "pk": str(uuid.uuid4()),
    "number": "1",
    "label": "production",
    "user": "nobody",
    "name": "no-such-dataset",
    "id": str(uuid.uuid4()),
}
# Keys act only inside their project: creating a project is refused to every key, whatever its scopes.
NOT_FOR_KEYS = {("project-list", "post")}
SKIPPED_METHODS = {"head", "options"}  # HEAD is GET's; OPTIONS is DRF's metadata


def _is_drf_view(view_class: Any) -> bool:
    return isinstance(view_class, type) and issubclass(view_class, APIView)


def _drf_patterns(patterns: Any = None) -> list[URLPattern]:
    found = []
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            found += _drf_patterns(pattern.url_patterns)
        elif isinstance(pattern, URLPattern) and _is_drf_view(getattr(pattern.callback, "cls", None)):
            found.append(pattern)
    return found


def _is_public(view_class: type[APIView]) -> bool:
    return any(issubclass(p, permissions.AllowAny) for p in view_class.permission_classes)


def _endpoints() -> list[tuple[URLPattern, str, str]]:
    """(pattern, HTTP method, action or method name that `required_scopes` is keyed by) of every
    non-public API endpoint."""
    endpoints = []
    for pattern in _drf_patterns():
        view_class = pattern.callback.cls  # type: ignore[attr-defined]
        if _is_public(view_class):
            continue
        # A viewset's router maps methods to actions; a plain APIView is keyed by its handler methods.
        actions = getattr(pattern.callback, "actions", None)
        handled = dict(actions) if actions else {m: m for m in view_class.http_method_names if hasattr(view_class, m)}
        endpoints += [(pattern, method, name) for method, name in handled.items() if method not in SKIPPED_METHODS]
    return endpoints


def _url(pattern: URLPattern) -> str:
    kwargs = {name: URL_KWARG_SAMPLES[name] for name in pattern.pattern.regex.groupindex}
    return reverse(str(pattern.name), kwargs=kwargs)


def _required(pattern: URLPattern, name: str) -> str | None:
    return getattr(pattern.callback.cls, "required_scopes", {}).get(name)  # type: ignore[attr-defined]


def _client(user, scopes: list[str]) -> APIClient:
    _, plaintext = services.api_key_create(project=user.personal_project, created_by=user, name="scoped", scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


def _call(client: Any, method: str, url: str, body: Any = None) -> Any:
    if method in ("post", "put", "patch"):
        return getattr(client, method)(url, {} if body is None else body, format="json")
    return getattr(client, method)(url)


# --- every endpoint ---------------------------------------------------------------------------------


def test_the_walk_finds_the_api():
    names = {(str(p.name), method) for p, method, _ in _endpoints()}

    assert {("prompt-list", "get"), ("run-alias", "post"), ("cost-summary", "get"), ("apikey-rotate", "post")} <= names
    assert len(names) >= 20
    assert "health" not in {name for name, _ in names}  # public: AllowAny


def test_every_api_view_checks_scopes_or_is_public():
    unchecked = {
        str(p.name)
        for p in _drf_patterns()
        if not _is_public(p.callback.cls) and HasScope not in p.callback.cls.permission_classes  # type: ignore[attr-defined]
    }

    assert unchecked == set()


def test_every_endpoint_declares_a_known_scope():
    undeclared = {f"{method.upper()} {p.name} ({name})" for p, method, name in _endpoints() if not _required(p, name)}
    unknown = {
        f"{method.upper()} {p.name}: {_required(p, name)}"
        for p, method, name in _endpoints()
        if _required(p, name) and _required(p, name) not in Scope.values
    }

    assert undeclared == set(), "declare these in the view's required_scopes"
    assert unknown == set()


def test_every_endpoint_refuses_a_key_without_its_scope(alice):
    failures = {}
    for pattern, method, name in _endpoints():
        needed = _required(pattern, name)
        client = _client(alice, [scope for scope in all_scopes() if scope != needed])

        response = _call(client, method, _url(pattern))

        body = response.json() if response["Content-Type"].startswith("application/json") else {}
        error = body.get("error", {})
        if (
            response.status_code != 403
            or error.get("code") != "insufficient_scope"
            or str(needed) not in error.get("message", "")
        ):
            failures[f"{method.upper()} {pattern.name}"] = (response.status_code, body)

    assert failures == {}


def test_every_endpoint_admits_a_key_with_only_its_scope(alice):
    """The scope gate opens (what follows is the endpoint's business: 2xx, 400 or 404 here)."""
    failures = {}
    for pattern, method, name in _endpoints():
        needed = _required(pattern, name)
        if needed is None:
            failures[f"{method.upper()} {pattern.name}"] = "declares no scope"
            continue
        client = _client(alice, [needed])

        response = _call(client, method, _url(pattern))

        if (pattern.name, method) in NOT_FOR_KEYS:
            if response.status_code != 403:
                failures[f"{method.upper()} {pattern.name}"] = (response.status_code, "expected 403 for every key")
        elif response.status_code in (401, 403, 405) or response.status_code >= 500:
            failures[f"{method.upper()} {pattern.name}"] = (response.status_code, response.content[:300])

    assert failures == {}


def test_every_endpoint_declares_the_scope_the_issue_asks_for():
    """The scopes of the endpoints that existed when scopes came (later ones are covered above)."""
    expected = {
        ("prompt-list", "get"): Scope.PROMPTS_READ,
        ("prompt-list", "post"): Scope.PROMPTS_WRITE,
        ("prompt-detail", "get"): Scope.PROMPTS_READ,
        ("prompt-detail", "patch"): Scope.PROMPTS_WRITE,
        ("prompt-detail", "delete"): Scope.PROMPTS_WRITE,
        ("prompt-version-list", "get"): Scope.PROMPTS_READ,
        ("prompt-version-list", "post"): Scope.PROMPTS_WRITE,
        ("prompt-version-detail", "get"): Scope.PROMPTS_READ,
        ("prompt-labels", "get"): Scope.PROMPTS_READ,
        ("prompt-move-label", "put"): Scope.PROMPTS_WRITE,
        ("prompt-render", "post"): Scope.PROMPTS_READ,
        ("run-list", "get"): Scope.RUNS_READ,
        ("run-list", "post"): Scope.RUNS_EXECUTE,
        ("run-detail", "get"): Scope.RUNS_READ,
        ("run-cancel", "post"): Scope.RUNS_EXECUTE,
        ("run-alias", "post"): Scope.RUNS_EXECUTE,
        ("cost-list", "get"): Scope.BILLING_READ,
        ("cost-summary", "get"): Scope.BILLING_READ,
        ("apikey-list", "get"): Scope.KEYS_MANAGE,
        ("apikey-list", "post"): Scope.KEYS_MANAGE,
        ("apikey-detail", "delete"): Scope.KEYS_MANAGE,
        ("apikey-rotate", "post"): Scope.KEYS_MANAGE,
    }
    declared = {(str(p.name), method): _required(p, name) for p, method, name in _endpoints()}

    assert {endpoint: declared.get(endpoint) for endpoint in expected} == expected


# --- a read-only key, a session, fail-closed ----------------------------------------------------------


@pytest.fixture
def alices_prompt(alice):
    prompt, _ = prompt_with_version(alice, name="greet")
    return prompt


def _prompt_state(prompt: Prompt) -> dict[str, Any]:
    return {
        "prompt": Prompt.objects.filter(pk=prompt.pk).values().get(),
        "versions": list(PromptVersion.objects.filter(prompt=prompt).values_list("number", flat=True)),
        "labels": list(PromptLabel.objects.filter(prompt=prompt).values("name", "version_id")),
        "moves": LabelMove.objects.filter(prompt=prompt).count(),
    }


def test_a_prompts_read_key_reads_and_renders_but_cannot_write(alice, alices_prompt):
    client = _client(alice, [Scope.PROMPTS_READ])
    before = _prompt_state(alices_prompt)
    version = {"template": "Hi {{ name }}", "variables": {"name": {}}, "model": "local/smollm2"}

    reads = {
        "list": client.get("/api/v1/prompts"),
        "retrieve": client.get("/api/v1/prompts/greet"),
        "versions": client.get("/api/v1/prompts/greet/versions"),
        "version": client.get("/api/v1/prompts/greet/versions/1"),
        "labels": client.get("/api/v1/prompts/greet/labels"),
        "resolve": client.get("/api/v1/prompts/greet/resolve"),
        "render": client.post("/api/v1/prompts/greet/render", {"variables": {"name": "Ann"}}, format="json"),
    }
    writes = {
        "create": client.post("/api/v1/prompts", {"name": "new", **version}, format="json"),
        "update": client.patch("/api/v1/prompts/greet", {"description": "changed"}, format="json"),
        "archive": client.delete("/api/v1/prompts/greet"),
        "new version": client.post("/api/v1/prompts/greet/versions", version, format="json"),
        "move label": client.put("/api/v1/prompts/greet/labels/production", {"version": 1}, format="json"),
    }
    others = {
        "runs": client.get("/api/v1/runs"),
        "costs": client.get("/api/v1/costs"),
        "keys": client.get(KEYS_URL),
    }

    assert {name: r.status_code for name, r in reads.items()} == dict.fromkeys(reads, 200)
    assert [p["name"] for p in reads["list"].json()["results"]] == ["greet"]
    assert reads["render"].json()["text"] == "Say hello to Ann."
    for name, response in writes.items():
        error = assert_error(response, 403, "insufficient_scope")
        assert "prompts:write" in error["message"], name
    for response, scope in zip(others.values(), ["runs:read", "billing:read", "keys:manage"], strict=True):
        assert scope in assert_error(response, 403, "insufficient_scope")["message"]
    assert _prompt_state(alices_prompt) == before
    assert list(Prompt.objects.filter(project=alice.personal_project).values_list("name", flat=True)) == ["greet"]


def test_a_prompts_write_key_can_write(alice, alices_prompt):
    client = _client(alice, [Scope.PROMPTS_WRITE])

    response = client.patch("/api/v1/prompts/greet", {"description": "changed"}, format="json")

    assert response.status_code == 200
    assert Prompt.objects.get(pk=alices_prompt.pk).description == "changed"
    assert_error(client.get("/api/v1/prompts/greet"), 403, "insufficient_scope")


def test_a_missing_scope_is_refused_before_the_object_is_looked_up(alice, bob, alices_prompt):
    """Someone else's prompt and a missing one get the same 403: the scope check reveals nothing."""
    client = _client(bob, [Scope.PROMPTS_READ])

    theirs = client.patch("/api/v1/prompts/" + str(alices_prompt.pk), {"description": "x"}, format="json")
    missing = client.patch(f"/api/v1/prompts/{uuid.uuid4()}", {"description": "x"}, format="json")

    assert assert_error(theirs, 403)["message"] == assert_error(missing, 403)["message"]


def test_an_unhandled_method_is_still_405_for_a_scoped_key(alice):
    client = _client(alice, [Scope.RUNS_READ])

    assert_error(client.put("/api/v1/prompts", {}, format="json"), 405, "method_not_allowed")


def test_session_staff_has_every_scope(admin_client, admin_user):
    version = {"template": "Hi {{ name }}", "variables": {"name": {}}, "model": "local/smollm2"}

    created = admin_client.post("/api/v1/prompts", {"name": "staff", **version}, content_type="application/json")
    listed = admin_client.get("/api/v1/prompts")
    keys = admin_client.post(KEYS_URL, {"name": "staff-key", "scopes": ["runs:read"]}, content_type="application/json")

    assert created.status_code == 201
    assert [p["name"] for p in listed.json()["results"]] == ["staff"]
    assert keys.status_code == 201
    assert keys.json()["scopes"] == ["runs:read"]
    for url in ("/api/v1/runs", "/api/v1/costs", "/api/v1/costs/summary", KEYS_URL):
        assert admin_client.get(url).status_code == 200, url
    assert Prompt.objects.get(name="staff").created_by == admin_user


def test_health_needs_no_scope(db):
    assert APIClient().get("/api/v1/health").status_code == 200


class _Undeclared(APIView):
    def get(self, request: Any) -> Response:
        return Response({"ok": True})


class _PartlyDeclared(ViewSet):
    required_scopes = {"list": Scope.PROMPTS_READ}

    def list(self, request: Any) -> Response:
        return Response({"ok": True})

    @action(detail=False, methods=["get"])
    def forgotten(self, request: Any) -> Response:
        return Response({"ok": True})


def test_an_endpoint_without_a_declared_scope_refuses_every_key(alice, admin_user):
    _, plaintext = services.api_key_create(project=alice.personal_project, created_by=alice, name="all")
    factory = APIRequestFactory()

    def get(view: Any, user: Any = None) -> Any:
        request = factory.get("/x", HTTP_AUTHORIZATION=f"Bearer {plaintext}") if user is None else factory.get("/x")
        if user is not None:
            request.user = user  # as SessionAuthentication leaves it
            request._dont_enforce_csrf_checks = True
        response = view(request)
        response.render()
        return response.status_code, json.loads(response.content)

    undeclared = get(_Undeclared.as_view())
    forgotten = get(_PartlyDeclared.as_view({"get": "forgotten"}))
    declared = get(_PartlyDeclared.as_view({"get": "list"}))
    by_session = get(_Undeclared.as_view(), user=admin_user)

    for status, body in (undeclared, forgotten):
        assert status == 403
        assert body["error"]["code"] == "permission_denied"
        assert "declares no scope" in body["error"]["message"]
    assert declared == (200, {"ok": True})
    # A session acts with its role's scopes, so an undeclared endpoint refuses it too.
    assert by_session[0] == 403 and "declares no scope" in by_session[1]["error"]["message"]


def test_other_credentials_and_malformed_scopes_fail_closed(alice, admin_user):
    request = APIRequestFactory().get("/x")
    force_authenticate(request, user=admin_user, token="not-an-api-key")
    other = _PartlyDeclared.as_view({"get": "list"})(request)
    api_key, plaintext = services.api_key_create(
        project=alice.personal_project, created_by=alice, name="odd", scopes=["prompts:read"]
    )
    APIKey.objects.filter(pk=api_key.pk).update(scopes="prompts:read,runs:read")  # not a list

    malformed = APIClient().get("/api/v1/prompts", HTTP_AUTHORIZATION=f"Bearer {plaintext}")

    assert other.status_code == 403
    assert_error(malformed, 403, "insufficient_scope")


def test_required_scope_of_head_is_that_of_get():
    class View(APIView):
        required_scopes = {"get": Scope.RUNS_READ}

    assert HasScope.required_scope(View(), "HEAD") == Scope.RUNS_READ
    assert HasScope.required_scope(View(), "POST") is None


# --- creating keys with scopes ------------------------------------------------------------------------


def test_a_new_key_gets_every_scope_by_default(alice_client):
    response = alice_client.post(KEYS_URL, {"name": "full"}, format="json")

    assert response.status_code == 201
    assert response.json()["scopes"] == all_scopes()
    assert APIKey.objects.get(pk=response.json()["id"]).scopes == all_scopes()


def test_a_new_key_gets_the_scopes_asked_for_and_only_those_work(alice_client, alice, alices_prompt):
    response = alice_client.post(
        KEYS_URL, {"name": "reader", "scopes": ["runs:read", "prompts:read", "prompts:read"]}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["scopes"] == ["prompts:read", "runs:read"]  # deduplicated, in Scope order
    assert APIKey.objects.get(pk=response.json()["id"]).scopes == ["prompts:read", "runs:read"]
    reader = APIClient()
    reader.credentials(HTTP_X_API_KEY=response.json()["key"])
    assert reader.get("/api/v1/prompts/greet").status_code == 200
    assert reader.get("/api/v1/runs").status_code == 200
    assert_error(reader.get(KEYS_URL), 403, "insufficient_scope")
    listed = {row["id"]: row for row in alice_client.get(KEYS_URL).json()["results"]}
    assert listed[response.json()["id"]]["scopes"] == ["prompts:read", "runs:read"]


@pytest.mark.parametrize(
    ("scopes", "field", "named"),
    [
        (["prompts:read", "prompts:admin"], "scopes.1", '"prompts:admin" is not a scope; valid scopes are'),
        (["everything"], "scopes.0", '"everything" is not a scope'),
        ([], "scopes", "A key needs at least one scope."),
        ("prompts:read", "scopes", None),  # not a list
    ],
)
def test_bad_scopes_are_400_naming_the_item_and_create_nothing(alice_client, alice, scopes, field, named):
    response = alice_client.post(KEYS_URL, {"name": "bad", "scopes": scopes}, format="json")

    error = assert_error(response, 400, "validation_error", fields={field})
    if named:
        assert error["fields"][field][0].startswith(named)
    assert APIKey.objects.filter(created_by=alice).count() == 1  # only the client's own key


def test_a_key_cannot_grant_scopes_it_does_not_have(alice):
    client = _client(alice, [Scope.KEYS_MANAGE, Scope.PROMPTS_READ])

    wider = client.post(KEYS_URL, {"name": "wider", "scopes": ["prompts:read", "runs:execute"]}, format="json")
    default = client.post(KEYS_URL, {"name": "default"}, format="json")
    narrower = client.post(KEYS_URL, {"name": "narrower", "scopes": ["prompts:read"]}, format="json")

    error = assert_error(wider, 400, "validation_error", fields={"scopes"})
    assert "runs:execute" in error["message"]
    assert "prompts:read" not in error["message"]
    # The default is every scope, which this key does not have either.
    assert_error(default, 400, "validation_error", fields={"scopes"})
    assert narrower.status_code == 201
    assert narrower.json()["scopes"] == ["prompts:read"]
    assert set(APIKey.objects.filter(created_by=alice).values_list("name", flat=True)) == {"scoped", "narrower"}


def test_keys_endpoints_need_keys_manage(alice):
    own = services.api_key_create(project=alice.personal_project, created_by=alice, name="victim")[0]
    client = _client(alice, [s for s in all_scopes() if s != Scope.KEYS_MANAGE])

    for response in (
        client.get(KEYS_URL),
        client.post(KEYS_URL, {"name": "x"}, format="json"),
        client.delete(f"{KEYS_URL}/{own.pk}"),
        client.post(f"{KEYS_URL}/{own.pk}/rotate", {}, format="json"),
    ):
        assert "keys:manage" in assert_error(response, 403, "insufficient_scope")["message"]
    stored = APIKey.objects.get(pk=own.pk)
    assert (stored.is_active, stored.secret_hash, stored.rotated_at) == (True, own.secret_hash, None)
    assert APIKey.objects.filter(created_by=alice).count() == 2


def test_api_key_create_service_checks_scopes(alice):
    with pytest.raises(ValidationFailed, match="'nope'"):
        services.api_key_create(project=alice.personal_project, created_by=alice, name="x", scopes=["nope"])
    creator = services.api_key_create(
        project=alice.personal_project, created_by=alice, name="creator", scopes=["keys:manage"]
    )[0]
    with pytest.raises(ValidationFailed, match="prompts:read"):
        services.api_key_create(
            project=alice.personal_project, created_by=alice, name="x", scopes=["prompts:read"], created_by_key=creator
        )

    api_key, _ = services.api_key_create(
        project=alice.personal_project, created_by=alice, name="ok", scopes=["keys:manage"], created_by_key=creator
    )

    assert api_key.scopes == ["keys:manage"]


# --- command and admin --------------------------------------------------------------------------------


def test_createapikey_takes_scopes(alice):
    out, err = StringIO(), StringIO()

    call_command("createapikey", "alice", "--scopes", "runs:execute, prompts:read", stdout=out, stderr=err)

    stored = APIKey.objects.get(created_by=alice)
    assert stored.scopes == ["prompts:read", "runs:execute"]
    assert "prompts:read,runs:execute" in err.getvalue()
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=out.getvalue().strip())
    assert client.get("/api/v1/prompts").status_code == 200
    assert_error(client.get("/api/v1/runs"), 403, "insufficient_scope")


def test_createapikey_defaults_to_every_scope_and_refuses_unknown_ones(alice):
    call_command("createapikey", "alice", stdout=StringIO(), stderr=StringIO())
    out = StringIO()

    with pytest.raises(CommandError, match="'prompts:delete'"):
        call_command("createapikey", "alice", "--scopes", "prompts:read,prompts:delete", stdout=out, stderr=StringIO())

    assert APIKey.objects.get(created_by=alice).scopes == all_scopes()
    assert out.getvalue() == ""


def _checked_scopes(page: str) -> list[str]:
    inputs = re.findall(r'<input type="checkbox" name="scopes" value="([^"]+)"[^>]*>', page)
    checked = re.findall(r'<input type="checkbox" name="scopes" value="([^"]+)"[^>]* checked>', page)
    assert inputs == all_scopes()  # every scope is offered
    return checked


def test_admin_add_form_offers_the_scopes_and_saves_the_chosen_ones(admin_client, alice):
    page = admin_client.get("/admin/accounts/apikey/add/").content.decode()
    response = admin_client.post(
        "/admin/accounts/apikey/add/",
        {
            "project": str(alice.personal_project.pk),
            "created_by": str(alice.pk),
            "name": "limited",
            "expires_at_0": "",
            "expires_at_1": "",
            "scopes": ["runs:read"],
        },
    )

    assert _checked_scopes(page) == all_scopes()  # the default
    assert response.status_code == 200
    assert APIKey.objects.get(created_by=alice).scopes == ["runs:read"]


def test_admin_change_form_edits_the_scopes(admin_client, alice):
    api_key, plaintext = services.api_key_create(
        project=alice.personal_project, created_by=alice, name="k", scopes=["prompts:read"]
    )
    url = f"/admin/accounts/apikey/{api_key.pk}/change/"

    page = admin_client.get(url).content.decode()
    response = admin_client.post(
        url, {"name": "k", "expires_at_0": "", "expires_at_1": "", "scopes": ["runs:read", "prompts:write"]}
    )
    empty = admin_client.post(url, {"name": "k", "expires_at_0": "", "expires_at_1": ""})

    assert _checked_scopes(page) == ["prompts:read"]
    assert response.status_code == 302
    assert empty.status_code == 200  # form error: a key needs a scope
    assert "scopes" in empty.context["adminform"].form.errors
    stored = APIKey.objects.get(pk=api_key.pk)
    assert stored.scopes == ["prompts:write", "runs:read"]
    assert stored.secret_hash == api_key.secret_hash
    assert services.api_key_authenticate(raw_key=plaintext).scopes == ["prompts:write", "runs:read"]
    assert "prompts:write, runs:read" in admin_client.get("/admin/accounts/apikey/").content.decode()


# --- OpenAPI ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def test_every_operation_documents_its_scope_and_403(schema):
    undocumented = {}
    documented = 0
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete") or path == "/api/v1/health":
                continue
            description = operation.get("description", "")
            scopes = [scope for scope in all_scopes() if f"Requires scope: {scope}." in description]
            if len(scopes) != 1 or "403" not in operation["responses"]:
                undocumented[f"{method.upper()} {path}"] = description
                continue
            documented += 1

    assert undocumented == {}
    assert documented == len(_endpoints())


def test_schema_documents_the_scope_of_known_operations(schema):
    paths = schema["paths"]

    assert "Requires scope: prompts:read." in paths["/api/v1/prompts/{ref}/render"]["post"]["description"]
    assert "Requires scope: runs:execute." in paths["/api/v1/run"]["post"]["description"]
    assert "Requires scope: keys:manage." in paths["/api/v1/keys/{id}/rotate"]["post"]["description"]
    assert "Requires scope: billing:read." in paths["/api/v1/costs/summary"]["get"]["description"]
    forbidden = paths["/api/v1/prompts/{ref}"]["patch"]["responses"]["403"]
    assert "`insufficient_scope`" in forbidden["description"]
    assert "prompts:write" in forbidden["description"]
    assert forbidden["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_security_scheme_lists_the_scopes(schema):
    description = schema["components"]["securitySchemes"]["apiKey"]["description"]

    for scope in Scope:
        assert f"`{scope.value}`: {scope.label}" in description
