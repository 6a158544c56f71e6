"""Request schemas state the server's rules: what the schema refuses, the server refuses (400, naming the
field), and what the server refuses for a rule JSON Schema can state, the schema refuses too.

Each case below is a request Schemathesis found the schema allowing and the server refusing (or, for
the multipart form, the other way round); the schema refusing it is what keeps a schema-valid request
from ever getting that 400. `.ci/schemathesis.sh` checks the same at scale.
"""

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from drf_spectacular.generators import SchemaGenerator

from llmops.tests.helpers import assert_error
from llmops.tests.test_schema import schema_errors
from prompts.tests.factories import prompt_with_version

pytestmark = pytest.mark.django_db

CHAT = [{"role": "user", "content": "Hi {{ name }}"}]


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


@pytest.fixture
def greet(alice):
    return prompt_with_version(alice, name="greet")[0]


def _body_errors(schema: dict[str, Any], method: str, path: str, body: Any, media: str) -> list[str]:
    content = schema["paths"][path][method.lower()]["requestBody"]["content"][media]
    return schema_errors(schema, content["schema"], body)


JSON_CASES = [
    # (method, schema path, request path, body, fields the 400 names)
    (
        "POST",
        "/api/v1/prompts",
        "/api/v1/prompts",
        {"name": "both", "model": "local/m", "template": "Hi", "messages": CHAT},
        {"template"},
    ),
    (
        "POST",
        "/api/v1/prompts/{ref}/versions",
        "/api/v1/prompts/greet/versions",
        {"template": "Hi {{ name }}", "messages": CHAT},
        {"template"},
    ),
    (
        "POST",
        "/api/v1/prompts/{ref}/versions",
        "/api/v1/prompts/greet/versions",
        {"model": "local/smollm2"},
        {"template"},
    ),
    ("POST", "/api/v1/prompts/{ref}/versions", "/api/v1/prompts/greet/versions", {"messages": []}, {"messages"}),
    (
        "POST",
        "/api/v1/prompts",
        "/api/v1/prompts",
        {"name": "spec", "model": "local/m", "template": "{{ x }}", "variables": {"x": {"typo": 1}}},
        {"variables.x"},
    ),
    (
        "POST",
        "/api/v1/prompts/{ref}/versions",
        "/api/v1/prompts/greet/versions",
        {"template": "Hi {{ name }}", "params": {"temperature": 3}},
        {"params.temperature"},
    ),
    ("POST", "/api/v1/prompts/{ref}/versions", "/api/v1/prompts/greet/versions", {"template": "   "}, {"template"}),
    (
        "POST",
        "/api/v1/prompts/{ref}/render",
        "/api/v1/prompts/greet/render",
        {"version": 1, "label": "production"},
        {"label"},
    ),
    (
        "PUT",
        "/api/v1/prompts/{ref}/labels/{label}",
        "/api/v1/prompts/greet/labels/production",
        {"version": 1, "extra": True},
        {"extra"},
    ),
    ("POST", "/api/v1/runs", "/api/v1/runs", {"prompt": "greet", "version": 1, "label": "production"}, {"label"}),
    ("POST", "/api/v1/runs", "/api/v1/runs", {"prompt": "greet", "params": {"colour": "red"}}, {"params.colour"}),
    ("POST", "/api/v1/runs", "/api/v1/runs", {"prompt": "greet", "params": {"stop": list("abcde")}}, {"params.stop"}),
    (
        "POST",
        "/api/v1/runs",
        "/api/v1/runs",
        {"prompt": "greet", "metadata": {f"k{n}": "v" for n in range(33)}},
        {"metadata"},
    ),
    ("POST", "/api/v1/run", "/api/v1/run", {"prompt": "greet", "version": 1, "label": "production"}, {"label"}),
    (
        "POST",
        "/api/v1/run",
        "/api/v1/run",
        {"prompt": "greet", "prompt_version_id": "0b6f1d5e-8d2c-4c61-9a53-3f0c2b8e7a10"},
        {"prompt_version_id"},
    ),
    ("POST", "/api/v1/run", "/api/v1/run", {"variables": {}}, {"prompt"}),
    (
        "POST",
        "/api/v1/batches",
        "/api/v1/batches",
        {"prompt": "greet", "version": 1, "label": "production", "items": [{"variables": {"name": "A"}}]},
        {"label"},
    ),
    ("POST", "/api/v1/budgets", "/api/v1/budgets", {"amount": "", "window": "day"}, {"amount"}),
    ("POST", "/api/v1/budgets", "/api/v1/budgets", {"amount": "-1", "window": "day"}, {"amount"}),
    ("POST", "/api/v1/budgets", "/api/v1/budgets", {"amount": "1.1234567", "window": "day"}, {"amount"}),
    ("POST", "/api/v1/budgets", "/api/v1/budgets", {"amount": "123456789", "window": "day"}, {"amount"}),
    ("POST", "/api/v1/keys", "/api/v1/keys", {"name": "   "}, {"name"}),
    ("POST", "/api/v1/webhooks", "/api/v1/webhooks", {"url": "https://example.com/h", "events": []}, {"events"}),
]


@pytest.mark.parametrize(("method", "schema_path", "path", "body", "fields"), JSON_CASES)
def test_the_schema_refuses_what_the_server_refuses(
    schema, alice_client, greet, method, schema_path, path, body, fields
):
    assert _body_errors(schema, method, schema_path, body, "application/json"), "the schema takes it"

    response = getattr(alice_client, method.lower())(path, body, format="json")

    assert_error(response, 400, fields=fields)


@pytest.mark.parametrize(
    "body",
    [
        {"name": "nul", "model": "local/m", "template": "Hi", "description": "a\x00b"},
        {"name": "nul", "model": "local/m", "template": "Hi", "commit_message": "\x00"},
    ],
)
def test_no_string_may_hold_nul(schema, alice_client, body):
    assert _body_errors(schema, "POST", "/api/v1/prompts", body, "application/json")

    assert_error(alice_client.post("/api/v1/prompts", body, format="json"), 400, "parse_error")


def test_latest_is_not_a_label_to_move(schema, alice_client, greet):
    operation = schema["paths"]["/api/v1/prompts/{ref}/labels/{label}"]["put"]
    label = next(p for p in operation["parameters"] if p["name"] == "label")
    assert schema_errors(schema, label["schema"], "latest")
    assert not schema_errors(schema, label["schema"], "latest-but-one")

    response = alice_client.put("/api/v1/prompts/greet/labels/latest", {"version": 1}, format="json")

    assert_error(response, 400, fields={"label"})


def _form(**fields: Any) -> dict[str, Any]:
    return {"prompt": "greet", "file": SimpleUploadedFile("items.csv", b"name\nAda\n"), **fields}


@pytest.mark.parametrize(
    ("sent", "as_the_schema_reads_it", "field"),
    [
        # JSON text `null` is no object (it was taken, then refused as "Must be an object." only later).
        ({"metadata": "null"}, {"metadata": None}, "metadata"),
        ({"params": "[1]"}, {"params": [1]}, "params"),
        # A form's empty value is not "not given" (DRF's reading of forms), nor is `1` a boolean.
        ({"label": ""}, {"label": ""}, "label"),
        ({"version": ""}, {"version": ""}, "version"),
        ({"skip_invalid": "1"}, {"skip_invalid": "1"}, "skip_invalid"),
    ],
)
def test_the_multipart_form_is_read_as_its_schema_says(
    schema, alice_client, greet, sent, as_the_schema_reads_it, field
):
    read = {"prompt": "greet", "file": "name\nAda\n", **as_the_schema_reads_it}
    assert _body_errors(schema, "POST", "/api/v1/batches", read, "multipart/form-data")

    response = alice_client.post("/api/v1/batches", _form(**sent), format="multipart")

    assert_error(response, 400, fields={field})


def test_multipart_json_text_is_bounded_like_a_json_body(alice_client, greet):
    response = alice_client.post("/api/v1/batches", _form(metadata='{"a": "\\u0000"}'), format="multipart")

    error = assert_error(response, 400, fields={"metadata"})
    assert "NUL" in error["fields"]["metadata"][0]


@pytest.mark.parametrize("amount", ["1.", ".5", "0001.25", "12345678.123456"])
def test_every_decimal_the_schema_takes_the_server_takes(schema, alice_client, amount):
    body = {"amount": amount, "window": "month"}
    assert not _body_errors(schema, "POST", "/api/v1/budgets", body, "application/json")

    response = alice_client.post("/api/v1/budgets", body, format="json")

    assert response.status_code == 201, response.content


def test_request_bodies_that_must_name_something_are_required(schema):
    # An absent body reads as {}, which the either-or rules refuse.
    paths = schema["paths"]
    assert paths["/api/v1/prompts/{ref}/versions"]["post"]["requestBody"]["required"] is True
    assert paths["/api/v1/run"]["post"]["requestBody"]["required"] is True
    assert paths["/api/v1/runs"]["post"]["requestBody"]["required"] is True
