"""GET /api/v1/prompts/{ref}/resolve: the version a label or number resolves to, with an ETag that
clients revalidate with If-None-Match (a 304 for one query while the label stays)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from drf_spectacular.generators import SchemaGenerator

from accounts import project_services
from accounts.models import Role
from accounts.tests.factories import UserFactory
from llmops.tests.helpers import assert_error
from prompts import services
from prompts.tests.factories import prompt_with_version

RESOLVE = "/api/v1/prompts/greet/resolve"


@pytest.fixture
def greet(alice):
    """greet: versions 1 and 2, `production` at 1."""
    prompt, _ = prompt_with_version(alice, name="greet")
    services.prompt_version_create(
        prompt=prompt, created_by=alice, model="local/smollm2", template="Hi {{ name }}!", variables={"name": {}}
    )
    services.label_move(prompt=prompt, label="production", version_number=1, moved_by=alice)
    return prompt


def _fetch(client, query="", etag=None):
    headers = {} if etag is None else {"HTTP_IF_NONE_MATCH": etag}
    return client.get(f"{RESOLVE}{query}", **headers)


# 200


def test_a_label_resolves_to_its_version_with_an_etag(alice_client, greet):
    response = _fetch(alice_client, "?label=production")

    assert response.status_code == 200
    body = response.json()
    version = alice_client.get("/api/v1/prompts/greet/versions/1").json()
    assert {key: body[key] for key in version} == version  # GET /versions/{number}'s shape
    assert body["number"] == 1
    assert body["template"] == "Say hello to {{ name }}."
    assert body["prompt"] == str(greet.pk)
    assert body["prompt_name"] == "greet"
    assert body["requested"] == {"label": "production", "version": None}
    etag = response["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert response["Cache-Control"] == "private, no-cache"


@pytest.mark.parametrize(
    ("query", "number", "requested"),
    [
        ("", 2, {"label": "latest", "version": None}),
        ("?label=latest", 2, {"label": "latest", "version": None}),
        ("?version=1", 1, {"label": None, "version": 1}),
        ("?version=2", 2, {"label": None, "version": 2}),
    ],
)
def test_a_number_or_latest_resolves(alice_client, greet, query, number, requested):
    response = _fetch(alice_client, query)

    assert response.status_code == 200
    assert response.json()["number"] == number
    assert response.json()["requested"] == requested


def test_the_etag_is_shared_only_by_identical_bodies(alice_client, greet):
    responses = {
        query: _fetch(alice_client, query) for query in ("", "?label=latest", "?version=2", "?label=production")
    }

    # Neither selector and `latest` give the same body, so the same tag; `version=2` the same version
    # with another `requested`, so another tag.
    assert responses[""].json() == responses["?label=latest"].json()
    assert responses[""]["ETag"] == responses["?label=latest"]["ETag"]
    assert responses["?version=2"].json()["id"] == responses[""].json()["id"]
    assert len({response["ETag"] for response in responses.values()}) == 3
    assert _fetch(alice_client, "?label=production")["ETag"] == responses["?label=production"]["ETag"]  # stable


def test_the_id_works_as_the_ref(alice_client, greet):
    response = alice_client.get(f"/api/v1/prompts/{greet.pk}/resolve?label=production")

    assert response.status_code == 200
    assert response.json()["number"] == 1
    assert response["ETag"] == _fetch(alice_client, "?label=production")["ETag"]


def test_an_archived_prompt_still_resolves(alice_client, greet):
    """As GET /versions: archiving hides the prompt from lists, its versions stay readable."""
    services.prompt_archive(prompt=greet)

    response = _fetch(alice_client, "?label=production")

    assert response.status_code == 200
    assert response.json()["number"] == 1


# 304


@pytest.mark.parametrize(
    "if_none_match",
    [
        "{etag}",
        "W/{etag}",
        '"other", {etag}',
        'W/"other",W/{etag} , "third"',
        "*",
        " * ",
    ],
)
def test_if_none_match_with_the_current_etag_is_a_304(alice_client, greet, if_none_match):
    etag = _fetch(alice_client, "?label=production")["ETag"]

    response = _fetch(alice_client, "?label=production", if_none_match.format(etag=etag))

    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == etag
    assert response["Cache-Control"] == "private, no-cache"
    assert "Content-Type" not in response


@pytest.mark.parametrize("if_none_match", ['"other"', "", "garbage", '"other", W/"else"'])
def test_if_none_match_with_other_etags_is_a_200(alice_client, greet, if_none_match):
    etag = _fetch(alice_client, "?label=production")["ETag"]

    response = _fetch(alice_client, "?label=production", if_none_match)

    assert response.status_code == 200
    assert response["ETag"] == etag
    assert response.json()["number"] == 1


def test_the_etag_changes_when_the_label_moves(alice_client, alice, greet):
    before = _fetch(alice_client, "?label=production")["ETag"]

    services.label_move(prompt=greet, label="production", version_number=2, moved_by=alice)
    moved = _fetch(alice_client, "?label=production", before)
    services.label_move(prompt=greet, label="production", version_number=1, moved_by=alice)
    back = _fetch(alice_client, "?label=production", moved["ETag"])

    assert moved.status_code == 200
    assert moved.json()["number"] == 2
    assert moved["ETag"] != before
    assert back.status_code == 200  # rolled back: the tag of version 1 again
    assert back["ETag"] == before


def test_a_new_version_changes_latest_but_not_a_label(alice_client, alice, greet):
    latest = _fetch(alice_client)["ETag"]
    production = _fetch(alice_client, "?label=production")["ETag"]

    services.prompt_version_create(
        prompt=greet, created_by=alice, model="local/smollm2", template="v3 {{ name }}", variables={"name": {}}
    )

    assert _fetch(alice_client, "", latest).json()["number"] == 3
    assert _fetch(alice_client, "?label=production", production).status_code == 304


def test_the_etag_follows_the_names_the_body_shows(alice_client, alice, greet):
    """A version is immutable, but its body also shows the prompt's name (the admin can change it) and
    its creator's username: the tag changes with them, so equal tags always mean equal bodies."""
    etag = _fetch(alice_client, "?label=production")["ETag"]

    alice.username = "alice-renamed"
    alice.save(update_fields=["username"])
    renamed = _fetch(alice_client, "?label=production", etag)

    assert renamed.status_code == 200
    assert renamed.json()["created_by"] == "alice-renamed"
    assert renamed["ETag"] != etag


def test_a_304_costs_one_query_after_authentication(alice_client, greet, django_assert_num_queries):
    etag = _fetch(alice_client, "?label=production")["ETag"]  # also refreshes the key's last use

    # The key with its creator's role (1), then one query resolves the label; no version is loaded.
    with CaptureQueriesContext(connection) as queries, django_assert_num_queries(2):
        response = _fetch(alice_client, "?label=production", etag)

    assert response.status_code == 304
    resolve = queries.captured_queries[-1]["sql"]
    assert "promptlabel" in resolve
    assert '"template"' not in resolve and '"messages"' not in resolve


@pytest.mark.parametrize("query", ["", "?version=1"])
def test_a_304_by_number_or_latest_costs_one_query_too(alice_client, greet, django_assert_num_queries, query):
    etag = _fetch(alice_client, query)["ETag"]

    with django_assert_num_queries(2):
        assert _fetch(alice_client, query, etag).status_code == 304


def test_a_200_costs_one_query_more_than_a_304(alice_client, greet, django_assert_num_queries):
    _fetch(alice_client)

    with django_assert_num_queries(3):  # the 304's two, and the version
        assert _fetch(alice_client, "?label=production").status_code == 200


# Errors


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?label=production&version=1", "label"),
        ("?label=latest&version=2", "label"),
        ("?version=0", "version"),
        ("?version=-1", "version"),
        ("?version=two", "version"),
        ("?version=", "version"),
        ("?label=", "label"),
        ("?label=not%20a%20slug", "label"),
        (f"?label={'x' * 51}", "label"),
    ],
)
def test_bad_query_is_a_400_naming_the_field(alice_client, greet, query, field):
    assert_error(_fetch(alice_client, query), 400, "validation_error", fields={field})


@pytest.mark.parametrize(("query", "field"), [("?label=staging", "label"), ("?version=3", "version")])
def test_an_unknown_label_or_version_is_a_404_naming_it(alice_client, greet, query, field):
    """As GET /versions/{number} for a number that does not exist: what was asked for is not found."""
    error = assert_error(_fetch(alice_client, query), 404, "not_found", fields={field})

    assert "does not exist" in error["message"]


def test_an_unknown_prompt_is_a_404(alice_client, greet):
    error = assert_error(alice_client.get("/api/v1/prompts/nope/resolve?label=production"), 404, "not_found")

    assert error["fields"] == {}
    assert error["message"] == "Prompt not found."


def test_another_projects_prompt_is_a_404(alice_client, bob_client, bob, greet):
    etag = _fetch(alice_client, "?label=production")["ETag"]

    for if_none_match in (None, etag, "*"):
        error = assert_error(_fetch(bob_client, "?label=production", if_none_match), 404, "not_found")
        assert error["fields"] == {}


def test_a_member_reads_a_shared_prompt_by_x_project(client, alice, greet):
    """A viewer of alice's project signed in, naming it in X-Project, gets the same version and tag."""
    vera = UserFactory(username="vera")
    project_services.member_add(project=alice.personal_project, user=vera, role=Role.VIEWER, acting_role=None)
    client.force_login(vera)
    project = {"HTTP_X_PROJECT": str(alice.personal_project.pk)}

    response = client.get(f"{RESOLVE}?label=production", **project)
    revalidated = client.get(f"{RESOLVE}?label=production", HTTP_IF_NONE_MATCH=response["ETag"], **project)
    own = client.get(f"{RESOLVE}?label=production")  # vera's personal project has no greet

    assert response.status_code == 200
    assert response.json()["number"] == 1
    assert revalidated.status_code == 304
    assert_error(own, 404, "not_found")


# OpenAPI


@pytest.fixture(scope="module")
def operation():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return schema["paths"]["/api/v1/prompts/{ref}/resolve"]["get"]


def test_schema_documents_parameters_headers_and_the_304(operation):
    parameters = {(p["in"], p["name"]): p for p in operation["parameters"]}
    responses = operation["responses"]

    assert parameters[("query", "label")]["schema"]["pattern"] == "^[-a-zA-Z0-9_]+$"
    assert parameters[("query", "version")]["schema"] == {"type": "integer", "minimum": 1}
    assert "Not with `version`" in parameters[("query", "label")]["description"]
    assert parameters[("header", "If-None-Match")].get("required", False) is False
    assert {"200", "304", "400", "403", "404"} <= set(responses)
    assert "content" not in responses["304"]
    for status in ("200", "304"):
        assert responses[status]["headers"]["ETag"]["required"] is True
        assert "private, no-cache" in responses[status]["headers"]["Cache-Control"]["description"]
    assert responses["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ResolvedVersion"}
    assert "Requires scope: prompts:read." in operation["description"]
