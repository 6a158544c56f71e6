"""Scorers that read the output as data: JSON, a JSON Schema, a number."""

import json
import math
import re
from typing import Any

from jsonschema import exceptions as schema_errors
from jsonschema import validators
from referencing import Registry
from referencing.exceptions import Unresolvable

from evals.scorers.base import ScoreContext, ScoreInput, Scorer, ScoreResult, ScorerOptionsError, ScoringFailed
from evals.scorers.options import number_option, options_take

JSON_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "number": (int, float),
    "integer": int,
    "boolean": bool,
    "null": type(None),
}


def _parsed(output: str) -> tuple[Any, str | None]:
    """The output as JSON, and None; or None and why it is not JSON."""
    try:
        return json.loads(output), None
    except json.JSONDecodeError as exc:
        return None, f"Not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
    except RecursionError:
        return None, "Not JSON: nested too deeply."


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    for name, kind in JSON_TYPES.items():
        if isinstance(value, kind):
            return name
    return type(value).__name__


class JsonValid(Scorer):
    name = "json_valid"
    description = (
        "1 when the whole output parses as JSON, else 0. Options: type (object, array, string, number, "
        "integer, boolean or null): it must also be of that type."
    )

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        checked = options_take(options, name=self.name, extra=("type",))
        if "type" in options:
            if options["type"] not in JSON_TYPES:
                raise ScorerOptionsError("Unknown type.", fields={"type": [f"One of {', '.join(JSON_TYPES)}."]})
            checked["type"] = options["type"]
        return checked

    def score(self, item: ScoreInput, *, context: ScoreContext) -> ScoreResult:
        data, problem = _parsed(item.output)
        if problem is not None:
            return ScoreResult(value=0.0, reason=problem)
        wanted = self.options.get("type")
        if wanted is not None:
            got = _json_type(data)
            # JSON Schema's rule: an integer is a number too; a boolean is neither.
            if got != wanted and not (wanted == "number" and got == "integer"):
                return ScoreResult(value=0.0, reason=f"JSON, but {got}, not {wanted}.")
        return ScoreResult(value=1.0, reason="Valid JSON.")


class JsonSchema(Scorer):
    name = "json_schema"
    description = (
        "1 when the output parses as JSON and conforms to the JSON Schema in options.schema (its $schema's "
        "draft, else the latest), else 0; the reason names the first violation's path. Remote $refs are not fetched."
    )

    def __init__(self, options: dict[str, Any]):
        super().__init__(options)
        schema = self.options["schema"]
        # An empty registry: a $ref to anything outside the schema is unresolvable, never fetched (SSRF).
        self.validator = validators.validator_for(schema)(schema, registry=Registry())

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options_take(options, name=self.name, extra=("schema",))
        schema = options.get("schema")
        if not isinstance(schema, dict | bool):
            raise ScorerOptionsError("Give a schema.", fields={"schema": ["A JSON Schema (an object)."]})
        try:
            validators.validator_for(schema).check_schema(schema)
        except schema_errors.SchemaError as exc:
            where = exc.json_path
            raise ScorerOptionsError(
                "Invalid schema.", fields={"schema": [f"Not a valid JSON Schema at {where}: {exc.message}"[:500]]}
            ) from None
        return {"schema": schema}

    def score(self, item: ScoreInput, *, context: ScoreContext) -> ScoreResult:
        data, problem = _parsed(item.output)
        if problem is not None:
            return ScoreResult(value=0.0, reason=problem)
        try:
            errors = list(self.validator.iter_errors(data))
        except Unresolvable as exc:
            raise ScoringFailed(f"The schema has a $ref that cannot be resolved here: {exc}"[:500]) from None
        if not errors:
            return ScoreResult(value=1.0, reason="Conforms to the schema.")
        first = schema_errors.best_match(errors)
        assert first is not None
        more = f" ({len(errors) - 1} more)" if len(errors) > 1 else ""
        return ScoreResult(value=0.0, reason=f"{first.json_path}: {first.message}"[:500] + more)


# The first number in a text: an optional sign, digits (commas allowed as thousands separators),
# an optional fraction and exponent.
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+(?:[eE][-+]?\d+)?")


def number_in(text: str) -> float | None:
    """The first number written in `text` ('about 1,234.5 km' -> 1234.5); None when there is none."""
    match = _NUMBER.search(text)
    if match is None:
        return None
    value = float(match.group(0).replace(",", ""))
    return value if math.isfinite(value) else None


class Numeric(Scorer):
    name = "numeric"
    description = (
        "1 when the first number in the output is within tolerance of the expected number, else 0. The "
        "expected number is options.expected, else the first number in the expected output. Options: "
        "tolerance (absolute, default 0), relative (a fraction of the expected number, default 0); the "
        "larger of the two applies, so with neither the numbers must be equal."
    )

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options_take(options, name=self.name, extra=("expected", "tolerance", "relative"))
        checked: dict[str, Any] = {
            "tolerance": number_option(options.get("tolerance", 0), field="tolerance", minimum=0),
            "relative": number_option(options.get("relative", 0), field="relative", minimum=0),
        }
        if "expected" in options:
            checked["expected"] = number_option(options["expected"], field="expected")
        return checked

    def score(self, item: ScoreInput, *, context: ScoreContext) -> ScoreResult:
        expected = self.options.get("expected")
        if expected is None:
            expected = number_in(item.expected_output)
            if expected is None:
                raise ScoringFailed("The example's expected output holds no number.")
        got = number_in(item.output)
        if got is None:
            return ScoreResult(value=0.0, reason="No number in the output.")
        allowed = max(self.options["tolerance"], self.options["relative"] * abs(expected))
        difference = abs(got - expected)
        if difference <= allowed:
            return ScoreResult(value=1.0, reason=f"{got:g} is within {allowed:g} of {expected:g}.")
        return ScoreResult(value=0.0, reason=f"{got:g} is {difference:g} from {expected:g} (allowed {allowed:g}).")
