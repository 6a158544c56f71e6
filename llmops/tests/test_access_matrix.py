"""Who may call what, for every operation of the OpenAPI schema, by role, by key and from outside.

MATRIX names the least role each operation needs (roles include the ones below them). For every
operation, every role is tried twice, signed in (a session naming the project in X-Project) and
with a key its member made (a key made while they were an admin, then narrowed by their demotion):
a role below the minimum gets 403, a role at or above it is let through (anything but 401, 403,
404 or a 5xx: the request may still be refused for what it asks). From outside, a member of another
project signed in and that project's key get 404 for every operation of this project: never a hint
that it exists. An operation missing from MATRIX fails the test, so a new endpoint needs an entry.
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from accounts import project_services
from accounts import services as account_services
from accounts.models import Role
from accounts.tests.factories import UserFactory
from billing.tests.factories import BudgetFactory
from evals.models import Experiment, LabelGate
from evals.tests.factories import dataset_with_examples
from prompts import services as prompt_services
from prompts.tests.factories import prompt_with_version
from runs.models import Run
from runs.tests.factories import BatchFactory, RunFactory
from webhooks.tests.factories import WebhookEndpointFactory

PUBLIC = "public"  # no credentials needed
ANY = "any signed-in user"  # not within one project (the caller's own projects)
VIEWER, EDITOR, ADMIN, OWNER = Role.VIEWER, Role.EDITOR, Role.ADMIN, Role.OWNER

MATRIX: dict[str, str] = {
    "GET /api/v1/health": PUBLIC,
    # The OpenAI-compatible gateway: a call is a run.
    "POST /v1/chat/completions": EDITOR,
    "GET /v1/models": VIEWER,
    # Projects and members (the project is the path's {ref}).
    "GET /api/v1/projects": ANY,
    "POST /api/v1/projects": ANY,
    "GET /api/v1/projects/{ref}": VIEWER,
    "PATCH /api/v1/projects/{ref}": ADMIN,
    "DELETE /api/v1/projects/{ref}": OWNER,
    "GET /api/v1/projects/{ref}/members": VIEWER,
    "POST /api/v1/projects/{ref}/members": ADMIN,
    "PATCH /api/v1/projects/{ref}/members/{user}": ADMIN,
    "DELETE /api/v1/projects/{ref}/members/{user}": ADMIN,
    # Prompts.
    "GET /api/v1/prompts": VIEWER,
    "POST /api/v1/prompts": EDITOR,
    "GET /api/v1/prompts/{ref}": VIEWER,
    "PATCH /api/v1/prompts/{ref}": EDITOR,
    "DELETE /api/v1/prompts/{ref}": EDITOR,
    "GET /api/v1/prompts/{ref}/labels": VIEWER,
    "PUT /api/v1/prompts/{ref}/labels/{label}": EDITOR,  # an unprotected label; protected: see below
    "POST /api/v1/prompts/{ref}/render": VIEWER,
    "GET /api/v1/prompts/{ref}/resolve": VIEWER,
    "GET /api/v1/prompts/{ref}/versions": VIEWER,
    "POST /api/v1/prompts/{ref}/versions": EDITOR,
    "GET /api/v1/prompts/{ref}/versions/{number}": VIEWER,
    # Runs and batches.
    "GET /api/v1/runs": VIEWER,
    "POST /api/v1/runs": EDITOR,
    "POST /api/v1/run": EDITOR,
    "GET /api/v1/runs/{id}": VIEWER,
    "POST /api/v1/runs/{id}/cancel": EDITOR,
    # A client's scores of runs, and a label's A/B split compared (evals).
    "GET /api/v1/runs/{id}/scores": VIEWER,
    "POST /api/v1/runs/{id}/scores": EDITOR,
    "GET /api/v1/prompts/{ref}/labels/{label}/report": VIEWER,
    "GET /api/v1/batches": VIEWER,
    "POST /api/v1/batches": EDITOR,
    "GET /api/v1/batches/{id}": VIEWER,
    "POST /api/v1/batches/{id}/cancel": EDITOR,
    "GET /api/v1/batches/{id}/results": VIEWER,
    # Spend and budgets.
    "GET /api/v1/costs": VIEWER,
    "GET /api/v1/costs/summary": VIEWER,
    # Evaluations: the scorers experiments can name.
    "GET /api/v1/scorers": VIEWER,
    "GET /api/v1/experiments": VIEWER,
    "POST /api/v1/experiments": EDITOR,
    "GET /api/v1/experiments/{id}": VIEWER,
    "GET /api/v1/experiments/{id}/examples": VIEWER,
    "GET /api/v1/experiments/{id}/compare": VIEWER,
    "POST /api/v1/experiments/{id}/cancel": EDITOR,
    "GET /api/v1/prompts/{ref}/gates": VIEWER,
    "POST /api/v1/prompts/{ref}/gates": ADMIN,
    "DELETE /api/v1/prompts/{ref}/gates/{label}": ADMIN,
    "GET /api/v1/budgets": VIEWER,
    "POST /api/v1/budgets": ADMIN,
    "GET /api/v1/budgets/{id}": VIEWER,
    "PATCH /api/v1/budgets/{id}": ADMIN,
    "DELETE /api/v1/budgets/{id}": ADMIN,
    # Keys and webhooks: managed (and read) by admins.
    "GET /api/v1/keys": ADMIN,
    "POST /api/v1/keys": ADMIN,
    "DELETE /api/v1/keys/{id}": ADMIN,
    "POST /api/v1/keys/{id}/rotate": ADMIN,
    "GET /api/v1/webhooks": ADMIN,
    "POST /api/v1/webhooks": ADMIN,
    "GET /api/v1/webhooks/{id}": ADMIN,
    "PATCH /api/v1/webhooks/{id}": ADMIN,
    "DELETE /api/v1/webhooks/{id}": ADMIN,
    "GET /api/v1/webhooks/{id}/deliveries": ADMIN,
    # Datasets (the path's {name}: the world's dataset `qa`).
    "GET /api/v1/datasets": VIEWER,
    "POST /api/v1/datasets": EDITOR,
    "GET /api/v1/datasets/{name}": VIEWER,
    "PATCH /api/v1/datasets/{name}": EDITOR,
    "DELETE /api/v1/datasets/{name}": EDITOR,
    "GET /api/v1/datasets/{name}/versions": VIEWER,
    "GET /api/v1/datasets/{name}/examples": VIEWER,
    "POST /api/v1/datasets/{name}/examples": EDITOR,
    "POST /api/v1/datasets/{name}/examples/remove": EDITOR,
    "POST /api/v1/datasets/{name}/examples/from-run": EDITOR,
    "POST /api/v1/datasets/{name}/import": EDITOR,
    "GET /api/v1/datasets/{name}/export": VIEWER,
}
ROLES = [VIEWER, EDITOR, ADMIN, OWNER]
RANK = {role: rank for rank, role in enumerate(ROLES)}
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def _schema_operations() -> set[str]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        f"{method.upper()} {path}"
        for path, item in schema["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


OPERATIONS = sorted(_schema_operations())


def test_every_operation_of_the_schema_has_an_entry():
    assert set(MATRIX) == set(OPERATIONS), "add each new operation to MATRIX (and remove the gone ones)"


@dataclass
class World:
    project: Any
    members: dict[str, Any]  # role -> user
    keys: dict[str, str]  # role -> plaintext of a key that member made
    ids: dict[str, str]  # path prefix -> id of a row of the project
    outsider: Any
    outsider_key: str


def _world() -> World:
    owner = UserFactory(username="olivia")
    project = project_services.project_create(name="Acme", slug="acme", created_by=owner)
    members = {OWNER: owner}
    for role, name in ((ADMIN, "adam"), (EDITOR, "edith"), (VIEWER, "vera")):
        members[role] = UserFactory(username=name)
        project_services.member_add(project=project, user=members[role], role=ADMIN, acting_role=None)
    victor = UserFactory(username="victor")  # the member that member operations act on
    project_services.member_add(project=project, user=victor, role=VIEWER, acting_role=None)
    keys = {}
    for role, user in members.items():
        _, keys[role] = account_services.api_key_create(project=project, created_by=user, name=f"{role} key")
    for role in (EDITOR, VIEWER):  # made while admins; the demotion narrows what their keys may do
        project_services.member_set_role(project=project, user=members[role], role=role, acting_role=None)

    prompt, _ = prompt_with_version(project, name="greet")
    prompt_services.label_move(prompt=prompt, label="staging", version_number=1, moved_by=owner)
    run = RunFactory(project=project, created_by=owner, status=Run.Status.QUEUED, prompt_version=prompt.versions.get())
    batch = BatchFactory(project=project, created_by=owner, prompt_version=prompt.versions.get())
    target_key, _ = account_services.api_key_create(project=project, created_by=members[ADMIN], name="target")
    budget = BudgetFactory(project=project, amount=Decimal("10"))
    endpoint = WebhookEndpointFactory(project=project, created_by=owner)
    dataset_with_examples(project, [{"expected_output": "x"}], name="qa", created_by=owner)
    qa = project.datasets.get(name="qa")
    experiment = Experiment.objects.create(
        project=project, prompt=prompt, dataset=qa, dataset_version=qa.versions.order_by("-number").first()
    )
    LabelGate.objects.create(
        project=project, prompt=prompt, label="staging", dataset=qa, scorer="exact_match", threshold=0.5
    )
    outsider = UserFactory(username="nina")
    _, outsider_key = account_services.api_key_create(
        project=outsider.personal_project, created_by=outsider, name="outside"
    )
    ids = {
        "runs": str(run.pk),
        "batches": str(batch.pk),
        "keys": str(target_key.pk),
        "budgets": str(budget.pk),
        "webhooks": str(endpoint.pk),
        "experiments": str(experiment.pk),
    }
    return World(project, members, keys, ids, outsider, outsider_key)


def _path(world: World, template: str) -> str:
    parts = template.split("/")
    resource = parts[3] if len(parts) > 3 else ""
    values = {
        "{ref}": world.project.slug if resource == "projects" else "greet",
        "{label}": "staging",
        "{number}": "1",
        "{user}": "victor",
        "{name}": "qa",
        "{id}": world.ids.get(resource, ""),
    }
    return "/".join(values.get(part, part) for part in parts)


def _body(operation: str, world: World) -> dict[str, Any] | None:
    bodies: dict[str, dict[str, Any]] = {
        "POST /api/v1/projects": {"name": "Another"},
        "POST /api/v1/prompts/{ref}/gates": {
            "label": "staging",
            "dataset": "qa",
            "scorer": "exact_match",
            "threshold": 0.5,
        },
        "PATCH /api/v1/projects/{ref}": {"name": "Acme Inc"},
        "POST /api/v1/projects/{ref}/members": {"user": "nina", "role": "viewer"},
        "PATCH /api/v1/projects/{ref}/members/{user}": {"role": "editor"},
        "POST /api/v1/prompts": {"name": "new", "template": "Hi", "model": "local/smollm2"},
        "PATCH /api/v1/prompts/{ref}": {"description": "Greets."},
        "PUT /api/v1/prompts/{ref}/labels/{label}": {"version": 1},
        "POST /api/v1/prompts/{ref}/render": {"variables": {"name": "Ada"}},
        "POST /api/v1/prompts/{ref}/versions": {"template": "Hello {{ name }}"},
        "POST /api/v1/runs": {"prompt": "greet", "variables": {"name": "Ada"}},
        "POST /api/v1/run": {"prompt": "greet", "variables": {"name": "Ada"}},
        "POST /api/v1/runs/{id}/scores": {"name": "helpful", "value": 1},
        # Refused after the role check (temperature out of range): nothing calls a provider.
        "POST /v1/chat/completions": {
            "model": "local/smollm2",
            "messages": [{"role": "user", "content": "x"}],
            "temperature": 5,
        },
        "POST /api/v1/batches": {"prompt": "greet", "items": [{"variables": {"name": "Ada"}}]},
        "POST /api/v1/budgets": {"amount": "5.00", "window": "day", "api_key": world.ids["keys"]},
        "PATCH /api/v1/budgets/{id}": {"amount": "20.00"},
        "POST /api/v1/keys": {"name": "new"},
        "POST /api/v1/webhooks": {"url": "https://hooks.example.com/x", "events": ["run.succeeded"]},
        "PATCH /api/v1/webhooks/{id}": {"description": "changed"},
    }
    if operation.startswith(("POST", "PUT", "PATCH")):
        return bodies.get(operation, {})
    return None


def _call(client: APIClient, operation: str, world: World, **headers: str) -> Any:
    method, template = operation.split(" ", 1)
    body = _body(operation, world)
    kwargs: dict[str, Any] = {"format": "json"} if body is not None else {}
    return getattr(client, method.lower())(_path(world, template), body, **kwargs, **headers)


def _session(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def _keyed(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


def _let_through(response: Any) -> bool:
    return response.status_code not in (401, 403, 404) and response.status_code < 500


PROJECT_OPERATIONS = [op for op in OPERATIONS if MATRIX.get(op) in ROLES]


@pytest.mark.django_db
@pytest.mark.parametrize("operation", PROJECT_OPERATIONS)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("credentials", ["session", "key"])
def test_each_role_gets_exactly_what_the_table_allows(operation, role, credentials):
    world = _world()
    if credentials == "session":
        client, headers = _session(world.members[role]), {"HTTP_X_PROJECT": world.project.slug}
    else:
        client, headers = _keyed(world.keys[role]), {}

    response = _call(client, operation, world, **headers)

    if RANK[role] >= RANK[MATRIX[operation]]:
        assert _let_through(response), (response.status_code, response.content)
    else:
        assert response.status_code == 403, (response.status_code, response.content)
        assert response.json()["error"]["code"] in ("insufficient_role", "insufficient_scope")


@pytest.mark.django_db
@pytest.mark.parametrize("operation", PROJECT_OPERATIONS)
def test_another_projects_member_and_key_get_404(operation):
    world = _world()

    signed_in = _call(_session(world.outsider), operation, world, HTTP_X_PROJECT=world.project.slug)
    by_id = _call(_session(world.outsider), operation, world, HTTP_X_PROJECT=str(world.project.pk))
    keyed = _call(_keyed(world.outsider_key), operation, world, HTTP_X_PROJECT=world.project.slug)

    for response in (signed_in, by_id, keyed):
        assert response.status_code == 404, (response.status_code, response.content)
        assert response.json()["error"]["code"] in ("project_not_found", "not_found")


@pytest.mark.django_db
@pytest.mark.parametrize("operation", [op for op in PROJECT_OPERATIONS if "{" in op])
def test_another_projects_key_finds_none_of_its_rows(operation):
    """Without naming the project: the key acts in its own, where these ids and names do not exist."""
    world = _world()

    response = _call(_keyed(world.outsider_key), operation, world)

    assert response.status_code in (400, 404), (response.status_code, response.content)


@pytest.mark.django_db
@pytest.mark.parametrize("operation", [op for op in OPERATIONS if MATRIX[op] == ANY])
def test_operations_outside_a_project_take_any_signed_in_user(operation):
    world = _world()

    response = _call(_session(world.outsider), operation, world)

    assert _let_through(response), (response.status_code, response.content)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_a_protected_label_moves_only_for_admins(role):
    world = _world()
    path = "/api/v1/prompts/greet/labels/production"

    by_session = _session(world.members[role]).put(path, {"version": 1}, format="json", HTTP_X_PROJECT="acme")
    by_key = _keyed(world.keys[role]).put(path, {"version": 1}, format="json")

    for response in (by_session, by_key):
        if RANK[role] >= RANK[ADMIN]:
            assert response.status_code == 200, response.content
        elif role == EDITOR:
            assert response.status_code == 403
            error = response.json()["error"]
            assert error["code"] == "insufficient_role"
            assert "'production'" in error["message"]
        else:
            assert response.status_code == 403
