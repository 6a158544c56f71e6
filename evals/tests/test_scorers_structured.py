"""The structured scorers: json_valid, json_schema, numeric."""

import pytest

from evals.scorers.base import ScoringFailed
from evals.scorers.structured import number_in
from evals.tests.scorer_helpers import options_errors, score
from providers.tests.openai_server import OpenAIServer

# --- json_valid -----------------------------------------------------------------------------------


@pytest.mark.parametrize("output", ['{"a": 1}', " [1, 2] ", '"text"', "3.5", "null", "true"])
def test_json_valid(output: str) -> None:
    assert score("json_valid", output).value == 1.0


@pytest.mark.parametrize("output", ["{'a': 1}", '{"a": 1', "", 'Sure! {"a": 1}', "NaNa"])
def test_json_invalid(output: str) -> None:
    result = score("json_valid", output)
    assert result.value == 0.0
    assert result.reason.startswith("Not JSON: ")


@pytest.mark.parametrize(
    ("output", "wanted", "value"),
    [
        ('{"a": 1}', "object", 1.0),
        ("[1]", "object", 0.0),
        ("[1]", "array", 1.0),
        ("3", "integer", 1.0),
        ("3", "number", 1.0),
        ("3.5", "integer", 0.0),
        ("true", "number", 0.0),
        ("true", "boolean", 1.0),
        ("null", "null", 1.0),
        ('"x"', "string", 1.0),
    ],
)
def test_json_valid_of_a_type(output: str, wanted: str, value: float) -> None:
    assert score("json_valid", output, options={"type": wanted}).value == value


def test_json_valid_type_is_checked() -> None:
    assert list(options_errors("json_valid", {"type": "dict"})) == ["scorers.0.options.type"]


def test_json_nested_too_deeply_is_not_json() -> None:
    assert score("json_valid", "[" * 100_000 + "]" * 100_000).value == 0.0


# --- json_schema ----------------------------------------------------------------------------------

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_json_schema_conforming_output() -> None:
    result = score("json_schema", '{"name": "Ada", "age": 36, "tags": ["math"]}', options={"schema": PERSON})
    assert result.value == 1.0
    assert result.reason == "Conforms to the schema."


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        ('{"name": "Ada", "age": -1}', "$.age: -1 is less than the minimum of 0"),
        ('{"name": "Ada", "age": 36, "tags": ["ok", 7]}', "$.tags[1]: 7 is not of type 'string'"),
        ('{"name": "Ada"}', "$: 'age' is a required property"),
    ],
)
def test_json_schema_names_the_violation_path(output: str, reason: str) -> None:
    result = score("json_schema", output, options={"schema": PERSON})
    assert result.value == 0.0
    assert result.reason == reason


def test_json_schema_counts_further_violations() -> None:
    result = score("json_schema", '{"name": 1, "age": "x"}', options={"schema": PERSON})
    assert result.value == 0.0
    assert result.reason.endswith("(1 more)")


def test_json_schema_output_that_is_not_json_scores_0() -> None:
    result = score("json_schema", "name: Ada", options={"schema": PERSON})
    assert result.value == 0.0
    assert result.reason.startswith("Not JSON")


def test_json_schema_is_checked_when_the_spec_is() -> None:
    errors = options_errors("json_schema", {"schema": {"type": "objekt"}})
    [message] = errors["scorers.0.options.schema"]
    assert message.startswith("Not a valid JSON Schema at $.type: ")
    assert list(options_errors("json_schema", {})) == ["scorers.0.options.schema"]
    assert list(options_errors("json_schema", {"schema": "object"})) == ["scorers.0.options.schema"]


def test_json_schema_follows_its_draft() -> None:
    # Draft 4's exclusiveMaximum is a boolean; in 2020-12 a boolean there is invalid.
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 5, "exclusiveMaximum": True}
    assert score("json_schema", "5", options={"schema": draft4}).value == 0.0
    assert score("json_schema", "4", options={"schema": draft4}).value == 1.0
    assert list(options_errors("json_schema", {"schema": {"exclusiveMaximum": True}})) == ["scorers.0.options.schema"]


def test_json_schema_never_fetches_a_remote_ref(openai_server: OpenAIServer) -> None:
    schema = {"$ref": f"{openai_server.url}/models"}  # a server that answers, and records what it is asked
    with pytest.raises(ScoringFailed, match=r"\$ref that cannot be resolved"):
        score("json_schema", "{}", options={"schema": schema})
    assert openai_server.requests == []


# --- numeric --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("42", 42.0),
        ("The answer is -3.5 degrees", -3.5),
        ("about 1,234.5 km", 1234.5),
        ("6.02e23 atoms", 6.02e23),
        ("x .5", 0.5),
        ("1 or 2", 1.0),
        ("none", None),
    ],
)
def test_number_in(text: str, number: float | None) -> None:
    assert number_in(text) == number


def test_numeric_exact_by_default() -> None:
    assert score("numeric", "It is 42.", "42").value == 1.0
    result = score("numeric", "It is 43.", "42")
    assert result.value == 0.0
    assert result.reason == "43 is 1 from 42 (allowed 0)."


def test_numeric_absolute_and_relative_tolerance() -> None:
    assert score("numeric", "10.4", "10", options={"tolerance": 0.5}).value == 1.0
    assert score("numeric", "10.6", "10", options={"tolerance": 0.5}).value == 0.0
    assert score("numeric", "1040", "1000", options={"relative": 0.05}).value == 1.0
    assert score("numeric", "1060", "1000", options={"relative": 0.05}).value == 0.0
    # The larger of the two applies.
    assert score("numeric", "1060", "1000", options={"relative": 0.05, "tolerance": 100}).value == 1.0


def test_numeric_expected_from_the_options() -> None:
    assert score("numeric", "3.14159", "ignored", options={"expected": 3.14, "tolerance": 0.01}).value == 1.0
    assert score("numeric", "3.2", "3.2", options={"expected": 3.14, "tolerance": 0.01}).value == 0.0


def test_numeric_without_a_number() -> None:
    result = score("numeric", "I do not know", "42")
    assert result.value == 0.0
    assert result.reason == "No number in the output."
    with pytest.raises(ScoringFailed, match="expected output holds no number"):
        score("numeric", "42", "forty-two")


def test_numeric_options_are_checked() -> None:
    assert options_errors("numeric", {"tolerance": -1}) == {"scorers.0.options.tolerance": ["At least 0."]}
    assert options_errors("numeric", {"relative": "5%"}) == {"scorers.0.options.relative": ["A number."]}
    assert options_errors("numeric", {"expected": True}) == {"scorers.0.options.expected": ["A number."]}
    assert list(options_errors("numeric", {"tolerence": 1})) == ["scorers.0.options.tolerence"]
