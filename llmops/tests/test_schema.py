"""The OpenAPI schema: served, valid, free of generator warnings, documenting the error responses, in
workflow order, and with a valid example for every request body."""

import re
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from jsonschema import Draft7Validator

from accounts.models import Scope

HTTP_METHODS = {"get", "put", "post", "patch", "delete"}
ALWAYS_DOCUMENTED = {"400", "401", "404", "500"}
WORKFLOW_TAGS = [
    "projects",
    "prompts",
    "runs",
    "batches",
    "datasets",
    "experiments",
    "evals",
    "gateway",
    "costs",
    "budgets",
    "keys",
    "webhooks",
    "health",
]


def as_json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema: `nullable: true` becomes a null alternative."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: as_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True:
        if isinstance(converted.get("type"), str):
            converted["type"] = [converted["type"], "null"]
        elif "type" in converted or converted.keys() & {"oneOf", "anyOf", "allOf", "$ref"}:
            return {"anyOf": [converted, {"type": "null"}]}
    return converted


def schema_errors(schema: dict[str, Any], value_schema: dict[str, Any], value: Any) -> list[str]:
    """What `value_schema` (a part of `schema`, refs and all) finds wrong with `value`."""
    root = {**as_json_schema(value_schema), "components": as_json_schema(schema["components"])}
    errors = Draft7Validator(root).iter_errors(value)
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in errors]


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def _operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def test_schema_endpoint_serves_the_schema(db, anon_client):
    response = anon_client.get("/api/schema/")

    assert response.status_code == 200
    served = yaml.safe_load(response.content)
    assert served["info"]["title"] == "LLMOps API"
    assert "/api/v1/prompts/{ref}/render" in served["paths"]


def test_docs_page_loads(db, anon_client):
    assert anon_client.get("/api/docs/").status_code == 200


def test_schema_validates(schema):
    validate_schema(schema)  # raises on an invalid OpenAPI document


def test_spectacular_command_validates_without_warnings(tmp_path: Path):
    out = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out), stderr=StringIO())

    assert yaml.safe_load(out.read_text())["openapi"].startswith("3.")


def test_every_operation_documents_the_error_responses(schema):
    missing = {}
    for path, method, operation in _operations(schema):
        expected = ALWAYS_DOCUMENTED - ({"401"} if path == "/api/v1/health" else set())
        lacking = expected - set(operation["responses"])
        if lacking:
            missing[f"{method.upper()} {path}"] = sorted(lacking)

    assert missing == {}
    assert len(list(_operations(schema))) >= 14


def test_error_responses_use_the_error_shape(schema):
    error_fields = schema["components"]["schemas"]["ErrorDetail"]["properties"]
    assert set(error_fields) == {"code", "message", "fields", "request_id"}
    openai_fields = schema["components"]["schemas"]["OpenAIErrorDetail"]["properties"]
    assert set(openai_fields) == {"message", "type", "param", "code", "fields", "request_id"}
    for path, method, operation in _operations(schema):
        # The gateway's OpenAI paths answer in OpenAI's error shape, which its SDKs read.
        shape = "OpenAIError" if path.startswith("/v1/") else "Error"
        for status in ALWAYS_DOCUMENTED & set(operation["responses"]):
            content = operation["responses"][status]["content"]["application/json"]
            assert content["schema"] == {"$ref": f"#/components/schemas/{shape}"}, (method, path, status)


def test_health_is_public_and_documents_no_401(schema):
    health = schema["paths"]["/api/v1/health"]["get"]

    assert "401" not in health["responses"]
    assert "503" in health["responses"]


def test_api_key_security_scheme(schema):
    scheme = schema["components"]["securitySchemes"]["apiKey"]
    assert {k: v for k, v in scheme.items() if k != "description"} == {"type": "http", "scheme": "bearer"}
    assert scheme["description"].startswith("`Authorization: Bearer <key>`")


def test_sections_follow_the_workflow(schema):
    assert [tag["name"] for tag in schema["tags"]] == WORKFLOW_TAGS
    assert all(tag.get("description") for tag in schema["tags"])
    used = {tag for _, _, operation in _operations(schema) for tag in operation["tags"]}
    assert used == set(WORKFLOW_TAGS)  # no operation in a section the list leaves unordered


def test_every_request_body_has_examples_that_its_schema_takes(schema):
    missing, invalid = [], {}
    for path, method, operation in _operations(schema):
        for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
            where = f"{method.upper()} {path} {media_type}"
            if not content.get("examples"):
                missing.append(where)
            for name, example in content.get("examples", {}).items():
                if errors := schema_errors(schema, content["schema"], example["value"]):
                    invalid[f"{where} {name}"] = errors

    assert missing == []
    assert invalid == {}


@pytest.mark.parametrize(
    ("component", "value"),
    [
        # What Swagger UI used to offer as the example: both contents, and made-up keys.
        (
            "PromptCreateRequest",
            {"name": "x", "model": "local/m", "template": "Hi", "messages": [{"role": "user", "content": "Hi"}]},
        ),
        ("VersionInputRequest", {"template": "Hi", "params": {"additionalProp1": {}}}),
    ],
)
def test_the_old_made_up_examples_are_invalid(schema, component, value):
    assert schema_errors(schema, {"$ref": f"#/components/schemas/{component}"}, value)


def test_a_key_request_names_the_valid_scopes(schema):
    scopes = schema["components"]["schemas"]["APIKeyCreateRequest"]["properties"]["scopes"]
    enum = schema["components"]["schemas"][scopes["items"]["$ref"].rsplit("/", 1)[1]]["enum"]

    assert enum == [scope.value for scope in Scope]
    assert scopes["minItems"] == 1


def test_no_component_is_described_by_a_docstring_written_for_this_codes_readers(schema):
    """drf-spectacular takes the first docstring up a serializer's class tree."""
    internal = re.compile(r"serializer|_json_type_problem|QueryDict|\bcontext\b|documentation only", re.IGNORECASE)
    described = {name: c.get("description", "") for name, c in schema["components"]["schemas"].items()}

    assert {name: text for name, text in described.items() if internal.search(text)} == {}


def test_project_scoped_operations_take_the_x_project_header(schema):
    def header(path, method):
        parameters = schema["paths"][path][method].get("parameters", [])
        return [p for p in parameters if p["in"] == "header" and p["name"] == "X-Project"]

    assert header("/api/v1/prompts", "get") and not header("/api/v1/prompts", "get")[0].get("required")
    assert header("/api/v1/runs/{id}", "get")
    assert not header("/api/v1/health", "get")  # public
    assert not header("/api/v1/projects/{ref}", "get")  # the project is in the path
