"""prompts.rendering: variable schemas, template checks, value checks, the sandbox."""

import pytest

from llmops.errors import ValidationFailed
from prompts import rendering
from prompts.rendering import RenderError

NAME = {"name": {"type": "string", "required": True}}


def _render_text(template, variables=None, values=None):
    return rendering.render(
        kind="text", template=template, messages=[], variables=variables or {}, values=values or {}
    )


# Variable schemas


def test_normalize_variables_fills_in_required():
    normalized = rendering.normalize_variables(
        {
            "name": {"type": "string"},
            "tone": {"type": "string", "default": "warm", "description": "How to sound."},
            "count": {"type": "integer", "required": False},
            "plain": {},
        }
    )

    assert normalized == {
        "name": {"type": "string", "required": True},
        "tone": {"type": "string", "required": False, "default": "warm", "description": "How to sound."},
        "count": {"type": "integer", "required": False},
        "plain": {"type": "string", "required": True},
    }


def test_normalize_variables_refuses_a_non_object():
    with pytest.raises(ValidationFailed) as caught:
        rendering.normalize_variables(["name"])

    assert set(caught.value.fields) == {"variables"}


def test_normalize_variables_names_every_invalid_entry():
    with pytest.raises(ValidationFailed) as caught:
        rendering.normalize_variables(
            {
                "1st": {"type": "string"},
                "has-dash": {"type": "string"},
                "not_a_spec": "string",
                "bad_type": {"type": "date"},
                "bad_required": {"required": "yes"},
                "bad_default": {"type": "integer", "default": "3"},
                "bool_default": {"type": "integer", "default": True},
                "bad_description": {"description": 3},
                "extra_key": {"type": "string", "pattern": ".*"},
                "fine": {"type": "number", "default": 0.5},
            }
        )

    fields = caught.value.fields
    assert set(fields) == {
        "variables.1st",
        "variables.has-dash",
        "variables.not_a_spec",
        "variables.bad_type",
        "variables.bad_required",
        "variables.bad_default",
        "variables.bool_default",
        "variables.bad_description",
        "variables.extra_key",
    }
    assert "pattern" in fields["variables.extra_key"][0]


@pytest.mark.parametrize("type_value", [[{}], {"a": 1}, ["string"], None, 3])
def test_a_type_that_is_not_a_string_is_a_field_error_not_a_crash(type_value):
    # Found by the fuzzer: a list as `type` (unhashable) used to raise TypeError, a 500.
    with pytest.raises(ValidationFailed) as caught:
        rendering.normalize_variables({"k": {"type": type_value, "default": None}})

    assert "type must be one of" in caught.value.fields["variables.k"][0]


# Template checks (at version creation)


def test_check_templates_reports_a_syntax_error_with_its_field():
    with pytest.raises(RenderError) as caught:
        rendering.check_templates(kind="text", template="Hello {{ name", messages=[], variables=NAME)

    assert list(caught.value.fields) == ["template"]
    assert "syntax error" in caught.value.fields["template"][0]


def test_check_templates_reports_undeclared_variables():
    with pytest.raises(RenderError) as caught:
        rendering.check_templates(
            kind="text", template="{{ greeting }}, {{ name }} and {{ other }}", messages=[], variables=NAME
        )

    assert list(caught.value.fields) == ["template"]
    assert "greeting, other" in caught.value.fields["template"][0]


def test_check_templates_names_the_chat_message_at_fault():
    messages = [
        {"role": "system", "content": "You help {{ name }}."},
        {"role": "user", "content": "{{ question }}"},
        {"role": "user", "content": "{% if %}"},
    ]

    with pytest.raises(RenderError) as caught:
        rendering.check_templates(kind="chat", template="", messages=messages, variables=NAME)

    assert set(caught.value.fields) == {"messages.1.content", "messages.2.content"}


def test_check_templates_accepts_declared_variables_and_loop_names():
    rendering.check_templates(
        kind="text",
        template="{% for item in items %}{{ loop.index }}. {{ item }}{% endfor %}",
        messages=[],
        variables={"items": {"type": "array", "required": True}},
    )


# Values (at render time)


def test_resolve_values_applies_defaults_and_keeps_given_values():
    variables = rendering.normalize_variables(
        {
            "name": {"type": "string"},
            "tone": {"type": "string", "default": "warm"},
            "n": {"type": "integer", "default": 1},
        }
    )

    assert rendering.resolve_values(variables, {"name": "Ada", "n": 3}) == {"name": "Ada", "tone": "warm", "n": 3}


def test_resolve_values_lists_every_offending_name():
    variables = rendering.normalize_variables(
        {
            "name": {"type": "string"},
            "count": {"type": "integer"},
            "ratio": {"type": "number"},
            "flag": {"type": "boolean"},
            "tags": {"type": "array"},
            "meta": {"type": "object"},
        }
    )

    with pytest.raises(RenderError) as caught:
        rendering.resolve_values(
            variables,
            {"count": True, "ratio": "0.5", "flag": 1, "tags": "a,b", "meta": [], "surprise": 1},
        )

    fields = caught.value.fields
    assert set(fields) == {
        "variables.name",
        "variables.count",
        "variables.ratio",
        "variables.flag",
        "variables.tags",
        "variables.meta",
        "variables.surprise",
    }
    assert fields["variables.name"] == ["Required variable is missing."]
    assert fields["variables.count"] == ["Expected integer, got boolean."]
    assert "Unknown variable" in fields["variables.surprise"][0]


def test_resolve_values_accepts_an_integer_for_a_number():
    variables = rendering.normalize_variables({"ratio": {"type": "number"}})

    assert rendering.resolve_values(variables, {"ratio": 2}) == {"ratio": 2}


def test_resolve_values_refuses_a_non_object():
    with pytest.raises(RenderError) as caught:
        rendering.resolve_values(NAME, ["Ada"])

    assert set(caught.value.fields) == {"variables"}


def test_optional_variable_without_default_stays_undefined():
    variables = rendering.normalize_variables({"name": {"type": "string", "required": False}})

    rendered = _render_text("Hi{% if name is defined %} {{ name }}{% endif %}!", variables)

    assert rendered == {"kind": "text", "text": "Hi!"}


# Rendering


def test_render_text():
    assert _render_text("Hello {{ name }}.", NAME, {"name": "Ada"}) == {"kind": "text", "text": "Hello Ada."}


def test_render_chat_renders_each_message():
    variables = rendering.normalize_variables({"persona": {"type": "string", "default": "a pirate"}, "q": {}})
    messages = [
        {"role": "system", "content": "You are {{ persona }}."},
        {"role": "user", "content": "{{ q }}"},
        {"role": "assistant", "content": "Fixed text."},
    ]

    rendered = rendering.render(kind="chat", template="", messages=messages, variables=variables, values={"q": "Why?"})

    assert rendered == {
        "kind": "chat",
        "messages": [
            {"role": "system", "content": "You are a pirate."},
            {"role": "user", "content": "Why?"},
            {"role": "assistant", "content": "Fixed text."},
        ],
    }


def test_render_does_not_escape_html():
    assert _render_text("{{ name }}", NAME, {"name": "<b>&</b>"})["text"] == "<b>&</b>"


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ name.__init__.__globals__ }}",
        "{{ name.__class__.__base__.__subclasses__() }}",
        "{{ lipsum.__globals__ }}",
    ],
)
def test_sandbox_refuses_attribute_access_to_internals(template):
    with pytest.raises(RenderError) as caught:
        _render_text(template, NAME, {"name": "Ada"})

    assert list(caught.value.fields) == ["template"]


def test_sandbox_refuses_to_mutate_values():
    items = ["a"]
    variables = {"items": {"type": "array", "required": True}}

    with pytest.raises(RenderError):
        _render_text("{{ items.append('b') }}", variables, {"items": items})

    assert items == ["a"]


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'a' * 1000000000000 }}",
        "{{ 9 ** (9 ** 9) }}",
        "{{ 2 ** 100000 }}",
        "{{ (2 ** 4000) * (2 ** 4000) }}",
        "{{ 'a'.ljust(1000000000000) }}",
        "{{ ('a' * 1000) * 1000000000 }}",
    ],
)
def test_huge_results_are_refused_instead_of_exhausting_the_server(template):
    with pytest.raises(RenderError) as caught:
        _render_text(template)

    assert list(caught.value.fields) == ["template"]


def test_small_arithmetic_still_works():
    assert _render_text("{{ 2 ** 10 }} {{ 'ab' * 3 }} {{ 6 * 7 }} {{ 1.5 * 2 }}")["text"] == "1024 ababab 42 3.0"


def test_render_error_for_a_runtime_failure_names_the_field():
    variables = {"n": {"type": "integer", "required": True}}

    with pytest.raises(RenderError) as caught:
        _render_text("{{ 1 / n }}", variables, {"n": 0})

    assert list(caught.value.fields) == ["template"]


def test_rendered_output_over_the_limit_is_refused(monkeypatch):
    monkeypatch.setattr(rendering, "MAX_RENDERED_CHARS", 10)

    with pytest.raises(RenderError) as caught:
        _render_text("{{ name }}", NAME, {"name": "x" * 11})

    assert list(caught.value.fields) == ["template"]
