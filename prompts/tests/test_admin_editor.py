"""The admin's version editor (prompts.admin_editor): the next version as fields or raw JSON, saved
through prompt_version_create, its refusals shown at the fields they name."""

import json

import pytest

from accounts import project_services
from accounts.models import Role
from accounts.tests.factories import UserFactory
from prompts import services
from prompts.models import Prompt, PromptVersion
from prompts.tests.factories import prompt_with_version


def _url(prompt, view="new_version"):
    return f"/admin/prompts/prompt/{prompt.pk}/{'versions/new' if view == 'new_version' else view}/"


def _form(*, messages=(), variables=(), **fields):
    """An editor POST: `messages` as (role, content), `variables` as dicts of the row's fields."""
    data = {
        "mode": "fields",
        "kind": "chat" if messages else "text",
        "template": "",
        "model": "local/smollm2",
        "model_other": "",
        "commit_message": "",
        "raw_json": "",
        "messages-TOTAL_FORMS": str(len(messages)),
        "messages-INITIAL_FORMS": "0",
        "variables-TOTAL_FORMS": str(len(variables)),
        "variables-INITIAL_FORMS": "0",
    }
    for index, (role, content) in enumerate(messages):
        data[f"messages-{index}-role"] = role
        data[f"messages-{index}-content"] = content
    for index, row in enumerate(variables):
        row = {"type": "string", "required": "on", "default": "", "description": "", **row}
        if row["required"] is None:
            del row["required"]
        data.update({f"variables-{index}-{key}": value for key, value in row.items()})
    data.update(fields)
    return data


def test_the_prompt_page_shows_its_latest_version_in_the_editor(admin_client, alice):
    prompt, _ = prompt_with_version(
        alice, template="Hello {{ name }}!", variables={"name": {"type": "string", "description": "Who"}}
    )

    page = admin_client.get(f"/admin/prompts/prompt/{prompt.pk}/change/").content.decode()

    assert 'id="version-editor"' in page and f'action="{_url(prompt)}"' in page
    assert "Edit as a new version (v2)" in page
    assert 'name="variables-0-name" value="name"' in page and 'value="Who"' in page
    assert '<option value="local/smollm2" selected>' in page
    assert "Save as new version" in page
    assert 'id="prompt-labels"' in page


def test_a_chat_version_with_a_new_variable_is_saved_as_the_next_version(admin_client, alice):
    prompt, v1 = prompt_with_version(alice, template="Hello {{ name }}!", variables={"name": {"type": "string"}})
    data = _form(
        messages=[("system", "You are brief."), ("user", "Greet {{ name }} in a {{ tone }} way.")],
        variables=[{"name": "name"}, {"name": "tone", "required": None, "default": "warm", "description": "Mood"}],
        temperature="0.3",
        max_tokens="64",
        stop="END\nSTOP",
        commit_message="Chat, with a tone",
    )

    response = admin_client.post(_url(prompt), data)

    assert response.status_code == 302 and response["Location"].endswith(f"/{prompt.pk}/change/")
    v2 = PromptVersion.objects.get(prompt=prompt, number=2)
    assert v2.kind == "chat"
    assert v2.messages == [
        {"role": "system", "content": "You are brief."},
        {"role": "user", "content": "Greet {{ name }} in a {{ tone }} way."},
    ]
    assert v2.variables == {
        "name": {"type": "string", "required": True},
        "tone": {"type": "string", "required": False, "default": "warm", "description": "Mood"},
    }
    assert v2.params == {"temperature": 0.3, "max_tokens": 64, "stop": ["END", "STOP"]}
    assert v2.commit_message == "Chat, with a tone" and v2.created_by.username == "admin"
    v1.refresh_from_db()
    assert v1.template == "Hello {{ name }}!"  # the old version is untouched
    followed = admin_client.get(response["Location"]).content.decode()
    assert "Saved as v2." in followed and "Compare with v1" in followed


def test_an_undeclared_variable_is_an_error_at_its_message_in_the_services_words(admin_client, alice):
    prompt, _ = prompt_with_version(alice)
    data = _form(
        messages=[("system", "Be brief."), ("user", "Hi {{ name }}, {{ mood }}?")], variables=[{"name": "name"}]
    )

    response = admin_client.post(_url(prompt), data)

    assert response.status_code == 400
    editor = response.context["editor"]
    assert editor.messages.forms[1].errors["content"] == [
        "Uses undeclared variables: mood. Declare them in `variables`."
    ]
    assert not editor.messages.forms[0].errors
    page = response.content.decode()
    assert "Uses undeclared variables: mood." in page and "Hi {{ name }}, {{ mood }}?" in page  # kept as typed
    assert PromptVersion.objects.filter(prompt=prompt).count() == 1


def test_a_syntax_error_shows_at_the_template(admin_client, alice):
    prompt, _ = prompt_with_version(alice)

    response = admin_client.post(_url(prompt), _form(template="Hello {{ name "))

    assert response.status_code == 400
    (problem,) = response.context["editor"].form.errors["template"]
    assert problem.startswith("Template syntax error on line 1:")
    assert PromptVersion.objects.filter(prompt=prompt).count() == 1


@pytest.mark.parametrize(
    ("fields", "variables", "where", "message"),
    [
        ({"temperature": "3"}, [], ("form", "temperature"), "Must be between 0 and 2."),
        ({"model": "nosuch/model"}, [], ("form", "model"), "No provider named 'nosuch'"),
        ({"model": "__other__", "model_other": "bad model"}, [], ("form", "model_other"), "Must be '<provider>/"),
        ({}, [{"name": "n", "type": "integer", "default": "1.5"}], ("variable", "default"), "default must be of type"),
        ({}, [{"name": "n", "type": "integer", "default": "{oops"}], ("variable", "default"), "Not valid JSON for"),
        ({}, [{"name": "2x"}], ("variable", "name"), "Variable names are identifiers"),
        ({}, [{"name": "a"}, {"name": "a"}], ("variable", "name"), "'a' is declared twice."),
    ],
)
def test_each_refusal_shows_at_its_field(admin_client, alice, fields, variables, where, message):
    prompt, _ = prompt_with_version(alice)

    response = admin_client.post(_url(prompt), _form(template="Hello.", variables=variables, **fields))

    assert response.status_code == 400
    editor = response.context["editor"]
    kind, name = where
    errors = editor.form.errors.get(name, []) if kind == "form" else editor.variables.forms[-1].errors.get(name, [])
    assert any(problem.startswith(message) for problem in errors), errors
    assert PromptVersion.objects.filter(prompt=prompt).count() == 1


def test_raw_json_saves_a_whole_version_and_names_the_field_of_a_refusal(admin_client, alice):
    prompt, _ = prompt_with_version(alice)
    version = {
        "kind": "chat",
        "messages": [{"role": "user", "content": "Say {{ word }}."}],
        "variables": {"word": {"type": "string", "default": "hi"}},
        "model": "local/smollm2",
        "params": {"top_p": 0.5},
    }

    refused = admin_client.post(
        _url(prompt), _form(mode="json", raw_json=json.dumps({**version, "variables": {}}), template="ignored")
    )
    saved = admin_client.post(_url(prompt), _form(mode="json", raw_json=json.dumps(version), commit_message="json"))

    assert refused.status_code == 400
    assert refused.context["editor"].form.errors["raw_json"] == [
        "messages.0.content: Uses undeclared variables: word. Declare them in `variables`."
    ]
    assert saved.status_code == 302
    v2 = PromptVersion.objects.get(prompt=prompt, number=2)
    assert (v2.kind, v2.messages, v2.params, v2.commit_message) == ("chat", version["messages"], {"top_p": 0.5}, "json")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "Not valid JSON:"),
        ("[1]", "Must be a JSON object."),
        ('{"template": "x", "nope": 1}', "Unknown keys: nope."),
        ('{"template": 3, "model": "local/smollm2"}', "template: Must be a string."),
        ('{"kind": "chat", "template": "x"}', 'kind: Must be "text" with a template'),
    ],
)
def test_malformed_raw_json_is_a_field_error_not_a_500(admin_client, alice, raw, message):
    prompt, _ = prompt_with_version(alice)

    response = admin_client.post(_url(prompt), _form(mode="json", raw_json=raw))

    assert response.status_code == 400
    assert response.context["editor"].form.errors["raw_json"][0].startswith(message)


def test_removed_rows_are_left_out(admin_client, alice):
    prompt, _ = prompt_with_version(alice)
    data = _form(
        messages=[("user", "Keep {{ a }}."), ("user", "Drop {{ gone }}.")], variables=[{"name": "a"}, {"name": "b"}]
    )
    data["messages-1-DELETE"] = "on"
    data["variables-1-DELETE"] = "on"

    response = admin_client.post(_url(prompt), data)

    assert response.status_code == 302
    v2 = PromptVersion.objects.get(prompt=prompt, number=2)
    assert v2.messages == [{"role": "user", "content": "Keep {{ a }}."}] and list(v2.variables) == ["a"]


def test_a_first_version_is_saved_from_the_blank_editor(admin_client, alice):
    response = admin_client.post(
        "/admin/prompts/prompt/add/",
        {
            "project": str(alice.personal_project.pk),
            "name": "fresh",
            "description": "",
            "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    fresh = Prompt.objects.get(name="fresh")
    page = admin_client.get(f"/admin/prompts/prompt/{fresh.pk}/change/").content.decode()
    assert "The first version" in page

    saved = admin_client.post(_url(fresh), _form(template="Hi."))

    assert saved.status_code == 302
    assert fresh.versions.get().template == "Hi."


def test_the_editor_page_needs_the_editor_role_of_the_project(client, alice):
    prompt, _ = prompt_with_version(alice)
    staff = UserFactory(username="staffer", is_staff=True, is_superuser=False)
    staff.user_permissions.add(*_prompt_permissions())
    client.force_login(staff)

    not_member = client.post(_url(prompt), _form(template="Hi."))
    project_services.member_add(project=prompt.project, user=staff, role=Role.VIEWER, acting_role=None)
    viewer = client.post(_url(prompt), _form(template="Hi."))

    assert not_member.status_code == 403 and "not a member" in not_member.content.decode()
    assert viewer.status_code == 403 and "needs editor" in viewer.content.decode()
    assert PromptVersion.objects.filter(prompt=prompt).count() == 1


def test_an_archived_prompt_has_no_editor(admin_client, alice):
    prompt, _ = prompt_with_version(alice)
    services.prompt_archive(prompt=prompt)

    page = admin_client.get(f"/admin/prompts/prompt/{prompt.pk}/change/").content.decode()
    refused = admin_client.post(_url(prompt), _form(template="Hi."))

    assert 'id="version-editor"' not in page and 'id="prompt-archived"' in page
    assert refused.status_code == 409


def _prompt_permissions():
    from django.contrib.auth.models import Permission

    return Permission.objects.filter(content_type__app_label="prompts")
