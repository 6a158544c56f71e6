"""The OpenAPI schema: served, valid, free of generator warnings, and documenting the error responses."""

from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

HTTP_METHODS = {"get", "put", "post", "patch", "delete"}
ALWAYS_DOCUMENTED = {"400", "401", "404", "500"}


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
    for path, method, operation in _operations(schema):
        for status in ALWAYS_DOCUMENTED & set(operation["responses"]):
            content = operation["responses"][status]["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def test_health_is_public_and_documents_no_401(schema):
    health = schema["paths"]["/api/v1/health"]["get"]

    assert "401" not in health["responses"]
    assert "503" in health["responses"]


def test_api_key_security_scheme(schema):
    scheme = schema["components"]["securitySchemes"]["apiKey"]
    assert {k: v for k, v in scheme.items() if k != "description"} == {"type": "http", "scheme": "bearer"}
    assert scheme["description"].startswith("`Authorization: Bearer <key>`")
