"""One JSON error shape for every failure under /api/, with the request id of the X-Request-ID header."""

import json
import logging

import pytest
import redis.exceptions
from django.db import OperationalError
from rest_framework.test import APIClient

from llmops.tests.helpers import assert_error
from prompts import selectors
from prompts.models import Prompt

PROMPTS = "/api/v1/prompts"


def test_validation_error(alice_client):
    error = assert_error(alice_client.post(PROMPTS, {"name": "x"}, format="json"), 400, "validation_error")

    assert error["fields"] == {"model": ["This field is required."]}


def test_unauthenticated(db, anon_client):
    assert_error(anon_client.get(PROMPTS), 401, "not_authenticated", fields=set())


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/nope", "/api/v1/prompts/x/y/z"])
def test_unknown_url_under_api_is_json_404(alice_client, path):
    assert_error(alice_client.get(path), 404, "not_found")


def test_unknown_url_elsewhere_is_not_json(db):
    response = APIClient().get("/nope")

    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


def test_method_not_allowed(alice_client):
    assert_error(alice_client.put(PROMPTS, {}, format="json"), 405, "method_not_allowed")


def test_malformed_json_is_a_parse_error(alice_client):
    response = alice_client.post(PROMPTS, data='{"name": "x", ', content_type="application/json")

    assert_error(response, 400, "parse_error")


def test_wrong_content_type_is_415(alice_client):
    response = alice_client.post(PROMPTS, data="name=x", content_type="application/x-www-form-urlencoded")

    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("path", [PROMPTS, "/api/v1/keys"])
def test_oversized_body_is_413(alice_client, alice, settings, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"name": "big", "description": "x" * 2000, "template": "hi", "model": "local/smollm2"})

    response = alice_client.post(path, data=body, content_type="application/json")

    assert_error(response, 413, "payload_too_large")
    assert not Prompt.objects.filter(project=alice.personal_project).exists()
    assert alice.api_keys.count() == 1


def test_body_at_the_limit_is_accepted(alice_client, settings):
    body = json.dumps({"name": "fits", "template": "hi", "model": "local/smollm2"})
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = len(body)

    assert alice_client.post(PROMPTS, data=body, content_type="application/json").status_code == 201


def test_an_unhandled_error_is_a_logged_json_500(alice_client, monkeypatch, caplog):
    def explode(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(selectors, "prompt_list", explode)

    with caplog.at_level(logging.ERROR, logger="llmops.errors"):
        response = alice_client.get(PROMPTS)

    error = assert_error(response, 500, "server_error")
    assert "boom" not in response.content.decode()
    record = next(r for r in caplog.records if r.name == "llmops.errors")
    assert record.exc_info is not None
    assert record.request_id == error["request_id"]


def test_sane_request_id_is_echoed(alice_client):
    response = alice_client.get("/api/v1/nope", HTTP_X_REQUEST_ID="trace-42.a:b_c")

    assert response["X-Request-ID"] == "trace-42.a:b_c"
    assert assert_error(response, 404)["request_id"] == "trace-42.a:b_c"


def test_request_id_is_set_on_success_too(alice_client):
    response = alice_client.get(PROMPTS, HTTP_X_REQUEST_ID="ok-1")

    assert response.status_code == 200
    assert response["X-Request-ID"] == "ok-1"


def test_request_ids_differ_between_requests(alice_client):
    first = alice_client.get(PROMPTS)["X-Request-ID"]
    second = alice_client.get(PROMPTS)["X-Request-ID"]

    assert first != second
    assert len(first) == 32


@pytest.mark.parametrize(
    "incoming",
    ["x" * 129, "has space", "line\nbreak", "tab\there", "", "semi;colon", "ünïcode"],
    ids=["too-long", "space", "newline", "tab", "empty", "semicolon", "unicode"],
)
def test_insane_request_id_is_replaced(alice_client, incoming):
    response = alice_client.get("/api/v1/nope", HTTP_X_REQUEST_ID=incoming)

    error = assert_error(response, 404)
    assert response["X-Request-ID"] != incoming
    assert len(response["X-Request-ID"]) == 32
    assert error["request_id"] == response["X-Request-ID"]


def test_longest_sane_request_id_is_kept(alice_client):
    incoming = "a" * 128

    assert alice_client.get(PROMPTS, HTTP_X_REQUEST_ID=incoming)["X-Request-ID"] == incoming


def test_request_log_line_carries_the_request_id(alice_client, caplog):
    with caplog.at_level(logging.INFO, logger="llmops.request"):
        response = alice_client.get(PROMPTS, HTTP_X_REQUEST_ID="log-me")

    record = next(r for r in caplog.records if r.name == "llmops.request")
    assert response.status_code == 200
    assert record.request_id == "log-me"
    assert (record.method, record.path, record.status) == ("GET", PROMPTS, 200)


def test_disallowed_host_is_a_json_400(db):
    response = APIClient().get(PROMPTS, HTTP_HOST="evil.example")

    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (
            redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
            "broker_unavailable",
        ),
        (redis.exceptions.TimeoutError("Timeout reading from 127.0.0.1:6379"), "broker_unavailable"),
        (OperationalError("connection to server at 127.0.0.1, port 5432 failed"), "database_unavailable"),
    ],
)
def test_an_unavailable_dependency_is_503_with_retry_after(alice_client, monkeypatch, settings, failure, code):
    settings.UNAVAILABLE_RETRY_AFTER_S = 7

    def down(**kwargs):
        raise failure

    monkeypatch.setattr(selectors, "prompt_list", down)
    response = alice_client.get(PROMPTS)

    error = assert_error(response, 503, code)
    assert response["Retry-After"] == "7"
    assert "5432" not in error["message"] and "6379" not in error["message"]  # no infrastructure detail


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
@pytest.mark.parametrize(
    ("path", "without_slash"),
    [
        ("/api/v1/prompts/", "/api/v1/prompts"),
        ("/api/v1/prompts/greet/", "/api/v1/prompts/greet"),
        ("/api/v1/keys//", "/api/v1/keys"),
    ],
)
def test_trailing_slash_is_a_json_404_naming_the_path_without_it(alice_client, settings, debug, path, without_slash):
    settings.DEBUG = debug

    error = assert_error(alice_client.get(path), 404, "not_found", fields=set())

    assert error["message"] == f"Not found: API paths have no trailing slash. Did you mean {without_slash}?"


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
def test_post_with_trailing_slash_is_a_json_404_not_a_csrf_failure(alice, settings, debug):
    settings.DEBUG = debug
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)  # a session cookie is what makes Django check CSRF

    response = client.post(f"{PROMPTS}/", {"name": "x"}, format="json")

    error = assert_error(response, 404, "not_found")
    assert f"Did you mean {PROMPTS}?" in error["message"]


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v1/nope/", "/api/nope", "/api/v1/prompts/x/y/z"])
def test_unknown_api_path_is_a_plain_json_404_with_debug_on_too(alice_client, settings, debug, path):
    settings.DEBUG = debug

    error = assert_error(alice_client.get(path), 404, "not_found", fields=set())

    assert error["message"] == "Not found."


@pytest.mark.parametrize("debug", [False, True], ids=["debug-off", "debug-on"])
def test_api_docs_without_slash_still_redirects(db, settings, debug):
    settings.DEBUG = debug

    response = APIClient().get("/api/docs")

    assert response.status_code == 301
    assert response["Location"] == "/api/docs/"


def test_unknown_url_elsewhere_is_not_json_with_debug_on(db, settings):
    settings.DEBUG = True

    response = APIClient().get("/nope/")

    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")
