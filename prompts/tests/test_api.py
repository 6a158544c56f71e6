"""The /api/v1/prompts endpoints: prompts, versions, labels and rendering."""

import pytest

from llmops.tests.helpers import assert_error
from prompts import services
from prompts.api.views import PROMPT_EXAMPLES, VERSION_EXAMPLES
from prompts.models import LabelMove, Prompt, PromptLabel, PromptVersion
from prompts.tests.factories import prompt_with_version

PROMPTS = "/api/v1/prompts"

TEXT_PROMPT = {
    "name": "greet",
    "description": "Greets someone.",
    "template": "Hello {{ name }}, in a {{ tone }} way.",
    "variables": {"name": {"type": "string"}, "tone": {"type": "string", "default": "warm"}},
    "model": "local/smollm2",
    "params": {"temperature": 0.2, "max_tokens": 64},
    "commit_message": "first draft",
}
CHAT_PROMPT = {
    "name": "support",
    "messages": [
        {"role": "system", "content": "You are {{ persona }}."},
        {"role": "user", "content": "{{ question }}"},
    ],
    "variables": {"persona": {"type": "string", "default": "a helpful agent"}, "question": {"type": "string"}},
    "model": "hf/Qwen/Qwen2.5-1.5B-Instruct",
}
NEXT_VERSION = {"template": "Hi {{ name }}!", "variables": {"name": {"type": "string"}}, "model": "local/smollm2"}


@pytest.fixture
def greet(alice):
    prompt, _ = prompt_with_version(alice, name="greet")
    return prompt


def _add_version(prompt, user, text):
    return services.prompt_version_create(
        prompt=prompt, created_by=user, model="local/smollm2", template=text, variables={"name": {}}
    )


# Create


def test_create_text_prompt_with_version_1(alice_client, alice):
    response = alice_client.post(PROMPTS, TEXT_PROMPT, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "greet"
    assert body["description"] == "Greets someone."
    assert body["latest_version"] == 1
    assert body["labels"] == {}
    assert body["archived_at"] is None
    assert body["version"]["number"] == 1
    assert body["version"]["kind"] == "text"
    assert body["version"]["created_by"] == "alice"
    assert body["version"]["variables"] == {
        "name": {"type": "string", "required": True},
        "tone": {"type": "string", "required": False, "default": "warm"},
    }
    prompt = Prompt.objects.get(pk=body["id"])
    assert prompt.created_by == alice
    version = PromptVersion.objects.get(prompt=prompt)
    assert (version.number, version.kind, version.template) == (1, "text", TEXT_PROMPT["template"])
    assert version.params == {"temperature": 0.2, "max_tokens": 64}
    assert version.commit_message == "first draft"


def test_create_chat_prompt(alice_client):
    response = alice_client.post(PROMPTS, CHAT_PROMPT, format="json")

    assert response.status_code == 201
    version = response.json()["version"]
    assert version["kind"] == "chat"
    assert version["template"] == ""
    assert version["messages"] == CHAT_PROMPT["messages"]
    stored = PromptVersion.objects.get(pk=version["id"])
    assert stored.messages == CHAT_PROMPT["messages"]


def test_create_keeps_template_whitespace(alice_client):
    response = alice_client.post(PROMPTS, {**TEXT_PROMPT, "template": "  Hello {{ name }}\n"}, format="json")

    assert response.status_code == 201
    assert PromptVersion.objects.get(pk=response.json()["version"]["id"]).template == "  Hello {{ name }}\n"


def test_create_with_a_taken_name_is_409(alice_client, alice):
    assert alice_client.post(PROMPTS, TEXT_PROMPT, format="json").status_code == 201

    response = alice_client.post(PROMPTS, {**TEXT_PROMPT, "description": "again"}, format="json")

    assert_error(response, 409, "name_taken", fields={"name"})
    assert Prompt.objects.filter(project=alice.personal_project, name="greet").count() == 1
    assert PromptVersion.objects.filter(prompt__project=alice.personal_project).count() == 1


def test_bob_may_reuse_alices_name(alice_client, bob_client, bob):
    assert alice_client.post(PROMPTS, TEXT_PROMPT, format="json").status_code == 201

    response = bob_client.post(PROMPTS, TEXT_PROMPT, format="json")

    assert response.status_code == 201
    assert Prompt.objects.get(pk=response.json()["id"]).created_by == bob
    assert Prompt.objects.filter(name="greet").count() == 2


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"template": "Hello {{ name"}, {"template"}),
        ({"template": "Hello {{ stranger }}"}, {"template"}),
        ({"messages": [{"role": "user", "content": "{{ who }}"}], "template": None}, {"messages.0.content"}),
        ({"messages": [{"role": "robot", "content": "hi"}], "template": None}, {"messages.0.role"}),
        ({"variables": {"1bad": {"type": "string"}}, "template": "hi"}, {"variables.1bad"}),
        ({"variables": {"n": {"type": "date"}}, "template": "hi"}, {"variables.n"}),
        ({"model": "gpt4"}, {"model"}),
        ({"params": {"temperature": 5}}, {"params.temperature"}),
        ({"name": "not a slug"}, {"name"}),
        ({"colour": "red"}, {"colour"}),
    ],
)
def test_create_rejects_invalid_input_naming_the_field(alice_client, alice, change, fields):
    payload = {k: v for k, v in {**TEXT_PROMPT, **change}.items() if v is not None}

    response = alice_client.post(PROMPTS, payload, format="json")

    assert_error(response, 400, fields=fields)
    assert not Prompt.objects.filter(project=alice.personal_project).exists()
    assert not PromptVersion.objects.exists()


def test_create_with_both_template_and_messages_is_400(alice_client):
    payload = {**TEXT_PROMPT, "messages": CHAT_PROMPT["messages"]}

    assert_error(alice_client.post(PROMPTS, payload, format="json"), 400, fields={"template"})
    assert not Prompt.objects.exists()


def test_create_without_required_fields_is_400(alice_client):
    response = alice_client.post(PROMPTS, {}, format="json")

    assert_error(response, 400, "validation_error", fields={"name", "model"})


# Retrieve, list, update, archive


def test_retrieve_by_id_and_by_name(alice_client, greet):
    by_id = alice_client.get(f"{PROMPTS}/{greet.pk}")
    by_name = alice_client.get(f"{PROMPTS}/greet")

    assert by_id.status_code == by_name.status_code == 200
    assert by_id.json() == by_name.json()
    assert by_id.json()["id"] == str(greet.pk)
    assert by_id.json()["latest_version"] == 1


def test_retrieve_unknown_is_404(alice_client, alice):
    assert_error(alice_client.get(f"{PROMPTS}/nope"), 404, "not_found")
    assert_error(alice_client.get(f"{PROMPTS}/00000000-0000-0000-0000-000000000000"), 404, "not_found")


def test_list_is_sorted_by_name_and_shows_labels(alice_client, alice, greet):
    prompt_with_version(alice, name="alpha")
    services.label_move(prompt=greet, label="production", version_number=1, moved_by=alice)

    response = alice_client.get(PROMPTS)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [p["name"] for p in body["results"]] == ["alpha", "greet"]
    assert body["results"][1]["labels"] == {"production": 1}


def test_patch_updates_the_description_only(alice_client, greet):
    response = alice_client.patch(f"{PROMPTS}/greet", {"description": "New words."}, format="json")

    assert response.status_code == 200
    assert response.json()["description"] == "New words."
    stored = Prompt.objects.get(pk=greet.pk)
    assert stored.description == "New words."
    assert stored.name == "greet"


def test_patch_with_an_unknown_field_is_400_naming_it(alice_client, greet):
    response = alice_client.patch(f"{PROMPTS}/{greet.pk}", {"description": "x", "name": "renamed"}, format="json")

    error = assert_error(response, 400, "validation_error", fields={"name"})
    assert error["fields"]["name"] == ["Unknown field."]
    stored = Prompt.objects.get(pk=greet.pk)
    assert (stored.name, stored.description) == ("greet", "")


def test_patch_with_nothing_changes_nothing(alice_client, greet):
    # The schema's PATCH body has no required field, so {} is a valid request: a no-op, not a 400.
    before = Prompt.objects.get(pk=greet.pk).updated_at

    response = alice_client.patch(f"{PROMPTS}/greet", {}, format="json")

    assert response.status_code == 200
    assert response.json()["description"] == ""
    assert Prompt.objects.get(pk=greet.pk).updated_at == before


def test_put_on_a_prompt_is_405(alice_client, greet):
    assert_error(alice_client.put(f"{PROMPTS}/greet", {"description": "x"}, format="json"), 405, "method_not_allowed")
    assert Prompt.objects.get(pk=greet.pk).description == ""


def test_delete_archives_and_keeps_versions(alice_client, alice, greet):
    _add_version(greet, alice, "v2 {{ name }}")

    response = alice_client.delete(f"{PROMPTS}/greet")

    assert response.status_code == 204
    stored = Prompt.objects.get(pk=greet.pk)
    assert stored.archived_at is not None
    assert PromptVersion.objects.filter(prompt=greet).count() == 2
    assert alice_client.get(PROMPTS).json()["count"] == 0
    listed = alice_client.get(PROMPTS, {"include_archived": "true"}).json()
    assert [p["name"] for p in listed["results"]] == ["greet"]
    assert listed["results"][0]["archived_at"] is not None
    # Still readable, versions included.
    assert alice_client.get(f"{PROMPTS}/greet").json()["archived_at"] is not None
    assert alice_client.get(f"{PROMPTS}/greet/versions/2").status_code == 200


def test_archived_prompt_refuses_new_versions_and_label_moves(alice_client, greet):
    alice_client.delete(f"{PROMPTS}/greet")

    versions = alice_client.post(f"{PROMPTS}/greet/versions", NEXT_VERSION, format="json")
    label = alice_client.put(f"{PROMPTS}/greet/labels/production", {"version": 1}, format="json")

    assert_error(versions, 409, "prompt_archived")
    assert_error(label, 409, "prompt_archived")
    assert PromptVersion.objects.filter(prompt=greet).count() == 1
    assert Prompt.objects.get(pk=greet.pk).latest_version_number == 1
    assert not PromptLabel.objects.exists()


def test_archived_name_stays_taken(alice_client, greet):
    alice_client.delete(f"{PROMPTS}/greet")

    assert_error(alice_client.post(PROMPTS, TEXT_PROMPT, format="json"), 409, "name_taken")


# Versions


def test_versions_are_numbered_and_listed_newest_first(alice_client, greet):
    second = alice_client.post(f"{PROMPTS}/greet/versions", NEXT_VERSION, format="json")
    third = alice_client.post(
        f"{PROMPTS}/{greet.pk}/versions", {**NEXT_VERSION, "commit_message": "third"}, format="json"
    )

    assert (second.status_code, third.status_code) == (201, 201)
    assert second.json()["number"] == 2
    assert third.json()["number"] == 3
    assert third.json()["created_by"] == "alice"
    listed = alice_client.get(f"{PROMPTS}/greet/versions").json()
    assert [v["number"] for v in listed["results"]] == [3, 2, 1]
    assert alice_client.get(f"{PROMPTS}/greet").json()["latest_version"] == 3
    assert Prompt.objects.get(pk=greet.pk).latest_version_number == 3
    assert PromptVersion.objects.get(prompt=greet, number=3).commit_message == "third"


def test_retrieve_a_version(alice_client, greet):
    response = alice_client.get(f"{PROMPTS}/greet/versions/1")

    assert response.status_code == 200
    body = response.json()
    assert body["number"] == 1
    assert body["prompt"] == str(greet.pk)
    assert body["template"] == "Say hello to {{ name }}."
    assert body["model"] == "local/smollm2"


def test_retrieve_a_missing_version_is_404(alice_client, greet):
    assert_error(alice_client.get(f"{PROMPTS}/greet/versions/2"), 404, "not_found")


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_versions_have_no_update_or_delete(alice_client, greet, method):
    before = PromptVersion.objects.values().get(prompt=greet, number=1)

    response = getattr(alice_client, method)(
        f"{PROMPTS}/greet/versions/1", {"template": "Changed {{ name }}"}, format="json"
    )

    assert_error(response, 405, "method_not_allowed")
    assert PromptVersion.objects.values().get(prompt=greet, number=1) == before


# A new version changes only what the request names: model, variables and params left out are those
# of the version it is based on (`based_on`, else the latest).

SUMMARIZE = {
    "name": "summarize",
    "template": "Summarize in {{ words }} words:\n\n{{ text }}",
    "variables": {"text": {"type": "string"}, "words": {"type": "integer", "default": 30}},
    "model": "local/smollm2",
    "params": {"max_tokens": 120, "temperature": 0.3},
}


def _version(prompt_name, number):
    return PromptVersion.objects.get(prompt__name=prompt_name, number=number)


def test_a_version_without_params_model_or_variables_keeps_those_of_the_latest(alice_client):
    # The README's tour: version 2 gives a new template and no params. It used to get none, and so
    # every run of it max_tokens BUDGET_DEFAULT_MAX_TOKENS (4096) instead of version 1's 120.
    alice_client.post(PROMPTS, SUMMARIZE, format="json")

    response = alice_client.post(
        f"{PROMPTS}/summarize/versions",
        {"template": "Summarize in at most {{ words }} words:\n\n{{ text }}", "commit_message": "At most"},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["number"] == 2
    assert body["params"] == {"max_tokens": 120, "temperature": 0.3}
    assert body["model"] == "local/smollm2"
    assert body["variables"] == _version("summarize", 1).variables
    v2 = _version("summarize", 2)
    assert (v2.template, v2.params, v2.model) == (
        "Summarize in at most {{ words }} words:\n\n{{ text }}",
        {"max_tokens": 120, "temperature": 0.3},
        "local/smollm2",
    )


def test_a_version_changes_only_what_it_names(alice_client):
    alice_client.post(PROMPTS, SUMMARIZE, format="json")

    response = alice_client.post(
        f"{PROMPTS}/summarize/versions",
        {
            "messages": [{"role": "user", "content": "{{ text }}"}],
            "params": {},
            "model": "hf/Qwen/Qwen2.5-1.5B-Instruct",
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    v2 = _version("summarize", 2)
    assert (v2.kind, v2.params, v2.model) == ("chat", {}, "hf/Qwen/Qwen2.5-1.5B-Instruct")  # {} is "none"
    assert v2.variables == _version("summarize", 1).variables  # not named: kept


def test_based_on_takes_the_omitted_fields_from_that_version(alice_client):
    alice_client.post(PROMPTS, SUMMARIZE, format="json")
    alice_client.post(
        f"{PROMPTS}/summarize/versions",
        {"template": "Shorten: {{ text }}", "variables": {"text": {"type": "string"}}, "params": {"max_tokens": 50}},
        format="json",
    )

    latest = alice_client.post(f"{PROMPTS}/summarize/versions", {"template": "Shorter: {{ text }}"}, format="json")
    based = alice_client.post(
        f"{PROMPTS}/summarize/versions", {"template": "{{ text }} in {{ words }}", "based_on": 1}, format="json"
    )

    assert (latest.status_code, based.status_code) == (201, 201), (latest.content, based.content)
    assert (latest.json()["number"], latest.json()["params"]) == (3, {"max_tokens": 50})
    assert set(latest.json()["variables"]) == {"text"}
    assert (based.json()["number"], based.json()["params"]) == (4, SUMMARIZE["params"])
    assert set(based.json()["variables"]) == {"text", "words"}


def test_the_inherited_variables_are_checked_against_the_new_template(alice_client):
    alice_client.post(PROMPTS, SUMMARIZE, format="json")

    response = alice_client.post(
        f"{PROMPTS}/summarize/versions", {"template": "{{ text }} for {{ reader }}"}, format="json"
    )

    error = assert_error(response, 400, "render_error", fields={"template"})
    assert "reader" in error["fields"]["template"][0]
    assert PromptVersion.objects.filter(prompt__name="summarize").count() == 1


def test_the_docs_examples_are_accepted(alice_client):
    for example in PROMPT_EXAMPLES:
        created = alice_client.post(PROMPTS, example.value, format="json")
        assert created.status_code == 201, (example.name, created.content)
    for number, example in enumerate(VERSION_EXAMPLES, start=2):
        response = alice_client.post(f"{PROMPTS}/summarize/versions", example.value, format="json")
        assert response.status_code == 201, (example.name, response.content)
        assert response.json()["number"] == number


@pytest.mark.parametrize("based_on", [2, 99])
def test_based_on_a_version_that_does_not_exist_is_400_naming_it(alice_client, greet, based_on):
    response = alice_client.post(
        f"{PROMPTS}/greet/versions", {"template": "Hi {{ name }}", "based_on": based_on}, format="json"
    )

    error = assert_error(response, 400, "validation_error", fields={"based_on"})
    assert error["fields"]["based_on"] == ["No such version of this prompt."]
    assert Prompt.objects.get(pk=greet.pk).latest_version_number == 1


def test_a_new_version_always_gives_its_content(alice_client, greet):
    response = alice_client.post(f"{PROMPTS}/greet/versions", {"model": "local/smollm2"}, format="json")

    assert_error(response, 400, "validation_error", fields={"template"})
    assert PromptVersion.objects.filter(prompt=greet).count() == 1


def test_a_first_version_needs_a_model(alice_client):
    response = alice_client.post(PROMPTS, {"name": "nomodel", "template": "Hi"}, format="json")

    assert_error(response, 400, "validation_error", fields={"model"})
    assert not Prompt.objects.filter(name="nomodel").exists()


@pytest.mark.parametrize("template", ["{{ undeclared }}", "{% if name %}unclosed", "{{ name }"])
def test_create_version_with_an_invalid_template_is_400(alice_client, greet, template):
    response = alice_client.post(f"{PROMPTS}/greet/versions", {**NEXT_VERSION, "template": template}, format="json")

    assert_error(response, 400, "render_error", fields={"template"})
    assert Prompt.objects.get(pk=greet.pk).latest_version_number == 1
    assert PromptVersion.objects.filter(prompt=greet).count() == 1


# Labels


def test_put_label_creates_and_moves_it(alice_client, alice, greet):
    _add_version(greet, alice, "v2 {{ name }}")

    created = alice_client.put(f"{PROMPTS}/greet/labels/production", {"version": 1}, format="json")
    moved = alice_client.put(f"{PROMPTS}/greet/labels/production", {"version": 2}, format="json")

    assert created.status_code == moved.status_code == 200
    assert created.json()["name"] == "production"
    assert created.json()["version"] == 1
    assert moved.json()["version"] == 2
    assert PromptLabel.objects.get(prompt=greet, name="production").version.number == 2
    assert alice_client.get(f"{PROMPTS}/greet").json()["labels"] == {"production": 2}


def test_labels_show_current_labels_and_history_newest_first(alice_client, alice, bob, greet):
    _add_version(greet, alice, "v2 {{ name }}")
    alice_client.put(f"{PROMPTS}/greet/labels/production", {"version": 1}, format="json")
    alice_client.put(f"{PROMPTS}/greet/labels/staging", {"version": 2}, format="json")
    alice_client.put(f"{PROMPTS}/greet/labels/production", {"version": 2}, format="json")
    rollback = alice_client.put(f"{PROMPTS}/greet/labels/production", {"version": 1}, format="json")

    response = alice_client.get(f"{PROMPTS}/greet/labels")

    assert rollback.json()["version"] == 1
    assert response.status_code == 200
    body = response.json()
    assert [(label["name"], label["version"]) for label in body["labels"]] == [("production", 1), ("staging", 2)]
    history = [(m["label"], m["from_version"], m["to_version"], m["moved_by"]) for m in body["history"]]
    assert history == [
        ("production", 2, 1, "alice"),
        ("production", 1, 2, "alice"),
        ("staging", None, 2, "alice"),
        ("production", None, 1, "alice"),
    ]
    assert all(m["moved_at"] for m in body["history"])
    assert LabelMove.objects.filter(prompt=greet).count() == 4


def test_moving_a_label_to_its_current_version_records_nothing(alice_client, greet):
    alice_client.put(f"{PROMPTS}/greet/labels/production", {"version": 1}, format="json")

    again = alice_client.put(f"{PROMPTS}/greet/labels/production", {"version": 1}, format="json")

    assert again.status_code == 200
    assert again.json()["version"] == 1
    assert LabelMove.objects.filter(prompt=greet).count() == 1
    assert len(alice_client.get(f"{PROMPTS}/greet/labels").json()["history"]) == 1


def test_latest_cannot_be_set(alice_client, greet):
    response = alice_client.put(f"{PROMPTS}/greet/labels/latest", {"version": 1}, format="json")

    assert_error(response, 400, fields={"label"})
    assert not PromptLabel.objects.exists()
    assert not LabelMove.objects.exists()


@pytest.mark.parametrize("payload", [{"version": 9}, {"version": 0}, {}])
def test_label_to_a_missing_version_is_400(alice_client, greet, payload):
    response = alice_client.put(f"{PROMPTS}/greet/labels/production", payload, format="json")

    assert_error(response, 400, fields={"version"})
    assert not PromptLabel.objects.exists()
    assert not LabelMove.objects.exists()


# Render


@pytest.fixture
def greet_v2(alice, greet):
    """greet with v1 "Say hello to {{ name }}.", v2 (tone with default), production -> v1."""
    services.prompt_version_create(
        prompt=greet,
        created_by=alice,
        model="local/smollm2",
        template="Greet {{ name }} in a {{ tone }} way.",
        variables={"name": {"type": "string"}, "tone": {"type": "string", "default": "warm"}},
    )
    services.label_move(prompt=greet, label="production", version_number=1, moved_by=alice)
    return greet


def test_render_latest_by_default(alice_client, greet_v2):
    response = alice_client.post(f"{PROMPTS}/greet/render", {"variables": {"name": "Ada"}}, format="json")

    assert response.status_code == 200
    assert response.json() == {
        "prompt": str(greet_v2.pk),
        "version": 2,
        "kind": "text",
        "text": "Greet Ada in a warm way.",
    }


def test_render_by_explicit_latest_label(alice_client, greet_v2):
    response = alice_client.post(
        f"{PROMPTS}/greet/render", {"label": "latest", "variables": {"name": "Ada", "tone": "dry"}}, format="json"
    )

    assert response.json()["version"] == 2
    assert response.json()["text"] == "Greet Ada in a dry way."


def test_render_by_version(alice_client, greet_v2):
    response = alice_client.post(
        f"{PROMPTS}/{greet_v2.pk}/render", {"version": 1, "variables": {"name": "Ada"}}, format="json"
    )

    assert response.status_code == 200
    assert (response.json()["version"], response.json()["text"]) == (1, "Say hello to Ada.")


def test_render_by_label(alice_client, greet_v2):
    response = alice_client.post(
        f"{PROMPTS}/greet/render", {"label": "production", "variables": {"name": "Ada"}}, format="json"
    )

    assert response.status_code == 200
    assert (response.json()["version"], response.json()["text"]) == (1, "Say hello to Ada.")


def test_render_chat_renders_each_message(alice_client):
    alice_client.post(PROMPTS, CHAT_PROMPT, format="json")

    response = alice_client.post(
        f"{PROMPTS}/support/render", {"variables": {"question": "Where is my order?"}}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "chat"
    assert "text" not in body
    assert body["messages"] == [
        {"role": "system", "content": "You are a helpful agent."},
        {"role": "user", "content": "Where is my order?"},
    ]


def test_render_lists_each_offending_variable(alice_client, alice):
    prompt_with_version(
        alice,
        name="typed",
        template="{{ name }} {{ count }} {{ ratio }}",
        variables={"name": {"type": "string"}, "count": {"type": "integer"}, "ratio": {"type": "number"}},
    )

    response = alice_client.post(
        f"{PROMPTS}/typed/render",
        {"variables": {"count": True, "ratio": "high", "extra": 1}},
        format="json",
    )

    error = assert_error(
        response,
        400,
        "render_error",
        fields={"variables.name", "variables.count", "variables.ratio", "variables.extra"},
    )
    assert error["fields"]["variables.count"] == ["Expected integer, got boolean."]


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"version": 9, "variables": {"name": "x"}}, {"version"}),
        ({"label": "nope", "variables": {"name": "x"}}, {"label"}),
        ({"label": "production", "version": 1, "variables": {"name": "x"}}, {"label"}),
        ({"variables": ["x"]}, {"variables"}),
        ({"variables": {"name": "x"}, "model": "other/model"}, {"model"}),
    ],
)
def test_render_rejects_bad_requests(alice_client, greet_v2, payload, fields):
    assert_error(alice_client.post(f"{PROMPTS}/greet/render", payload, format="json"), 400, fields=fields)


@pytest.mark.parametrize(
    "template",
    ["{{ ''.__class__.__mro__ }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "{{ 'a' * 100000000000 }}"],
)
def test_render_refuses_sandbox_escapes_with_400(alice_client, alice, template):
    prompt_with_version(alice, name="evil", template=template, variables={})

    response = alice_client.post(f"{PROMPTS}/evil/render", {}, format="json")

    assert_error(response, 400, "render_error", fields={"template"})
    assert "<class" not in response.content.decode()


# The model's provider


def test_a_version_naming_an_unknown_provider_is_400_naming_the_known_ones(alice_client, greet):
    response = alice_client.post(
        f"{PROMPTS}/greet/versions", {"template": "Hi {{ name }}", "model": "nosuch/model"}, format="json"
    )

    error = assert_error(response, 400, "unknown_provider", fields={"model"})
    assert error["fields"]["model"] == [
        "No provider named 'nosuch' (known: hf, local); staff add providers in the admin."
    ]
    assert greet.versions.count() == 1


def test_a_prompt_naming_an_unknown_provider_is_400_and_creates_nothing(alice_client):
    response = alice_client.post(PROMPTS, {**TEXT_PROMPT, "model": "nosuch/model"}, format="json")

    assert_error(response, 400, "unknown_provider", fields={"model"})
    assert not Prompt.objects.exists()


def test_a_version_naming_a_disabled_provider_is_400(alice_client, greet):
    from providers.models import Provider

    Provider.objects.filter(name="hf").update(enabled=False)

    body = {"template": "Hi {{ name }}", "model": "hf/Qwen/Qwen2.5-1.5B-Instruct"}
    response = alice_client.post(f"{PROMPTS}/greet/versions", body, format="json")

    assert_error(response, 400, "provider_disabled", fields={"model"})
    assert greet.versions.count() == 1


def test_a_version_is_saved_while_its_provider_is_unreachable(alice_client, greet):
    """The provider is asked nothing: `local` points at a closed port in tests."""
    response = alice_client.post(
        f"{PROMPTS}/greet/versions", {"template": "Hi {{ name }}", "model": "local/another-model"}, format="json"
    )

    assert response.status_code == 201, response.content
