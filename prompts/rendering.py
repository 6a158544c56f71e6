"""The one prompt renderer: sandboxed Jinja2 with strict, declared variables.

Templates are checked when a version is created (syntax, variables used but not declared);
values are checked when rendering (missing, unknown, wrong type). The sandbox forbids attribute
access to internals, so a template can never execute arbitrary code.
"""

import re
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmops.errors import FieldErrors, ValidationFailed

VARIABLE_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}
CHAT_ROLES = ("system", "user", "assistant")
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SPEC_KEYS = {"type", "required", "default", "description"}
MAX_RENDERED_CHARS = 1_000_000

_MAX_INT_BITS = 4096


class _Sandbox(ImmutableSandboxedEnvironment):
    """Also bounds `*` and `**`: without this, `{{ 'a' * 10**12 }}` or `{{ 9 ** (9 ** 9) }}` in a tiny
    template exhausts the server's memory or CPU before the output size is ever checked."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        ints = [v for v in (left, right) if isinstance(v, int)]
        sized = [v for v in (left, right) if isinstance(v, (str, list, tuple))]
        if operator == "*" and len(ints) == 1 and sized and len(sized[0]) * ints[0] > MAX_RENDERED_CHARS:
            raise SecurityError("Repetition result is too large.")
        if operator == "*" and len(ints) == 2 and sum(abs(v).bit_length() for v in ints) > _MAX_INT_BITS:
            raise SecurityError("Product is too large.")
        power_bits = (abs(left).bit_length() - 1) * right if len(ints) == 2 and right > 0 else 0
        if operator == "**" and power_bits > _MAX_INT_BITS:
            raise SecurityError("Power is too large.")
        return super().call_binop(context, operator, left, right)


_env = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class RenderError(ValidationFailed):
    code = "render_error"


def _type_matches(value: Any, type_name: str) -> bool:
    # bool is an int subclass in Python, but `true` is not an integer in a JSON schema.
    if isinstance(value, bool) and type_name in ("integer", "number"):
        return False
    return isinstance(value, VARIABLE_TYPES[type_name])


def normalize_variables(variables: Any) -> dict[str, dict[str, Any]]:
    """Validates a variable schema and fills in `required` (true unless a default is given)."""
    if not isinstance(variables, dict):
        raise ValidationFailed(
            "variables must be an object.", fields={"variables": ["Must be an object of name -> spec."]}
        )
    errors: FieldErrors = {}
    normalized: dict[str, dict[str, Any]] = {}
    for name, spec in variables.items():
        field = f"variables.{name}"
        if not _VARIABLE_NAME.fullmatch(name):
            errors[field] = ["Variable names are identifiers: letters, digits and _, not starting with a digit."]
            continue
        if not isinstance(spec, dict):
            errors[field] = ['Must be an object such as {"type": "string"}.']
            continue
        problems = []
        unknown = set(spec) - _SPEC_KEYS
        if unknown:
            problems.append(f"Unknown keys: {', '.join(sorted(unknown))}.")
        type_name = spec.get("type", "string")
        if not isinstance(type_name, str):  # a list or an object is not hashable: no `in` test on it
            type_name = repr(type_name)
        if type_name not in VARIABLE_TYPES:
            problems.append(f"type must be one of: {', '.join(VARIABLE_TYPES)}.")
        required = spec.get("required", "default" not in spec)
        if not isinstance(required, bool):
            problems.append("required must be true or false.")
        if "default" in spec and type_name in VARIABLE_TYPES and not _type_matches(spec["default"], type_name):
            problems.append(f"default must be of type {type_name}.")
        description = spec.get("description", "")
        if not isinstance(description, str):
            problems.append("description must be a string.")
        if problems:
            errors[field] = problems
            continue
        entry: dict[str, Any] = {"type": type_name, "required": required}
        if "default" in spec:
            entry["default"] = spec["default"]
        if description:
            entry["description"] = description
        normalized[name] = entry
    if errors:
        raise ValidationFailed("The variable schema is invalid.", fields=errors)
    return normalized


def _used_names(source: str, field: str, errors: FieldErrors) -> set[str]:
    try:
        return meta.find_undeclared_variables(_env.parse(source))
    except TemplateSyntaxError as exc:
        errors[field] = [f"Template syntax error on line {exc.lineno}: {exc.message}"]
        return set()


def check_templates(
    *, kind: str, template: str, messages: list[dict[str, Any]], variables: dict[str, dict[str, Any]]
) -> None:
    """Rejects syntax errors and variables a template uses without declaring them."""
    errors: FieldErrors = {}
    sources: list[tuple[str, str]] = []
    if kind == "text":
        sources.append(("template", template))
    else:
        for index, message in enumerate(messages):
            sources.append((f"messages.{index}.content", message["content"]))
    for field, source in sources:
        undeclared = _used_names(source, field, errors) - set(variables)
        if undeclared:
            errors.setdefault(field, []).append(
                f"Uses undeclared variables: {', '.join(sorted(undeclared))}. Declare them in `variables`."
            )
    if errors:
        raise RenderError("The template is invalid.", fields=errors)


def resolve_values(variables: dict[str, dict[str, Any]], values: Any) -> dict[str, Any]:
    """The values to render with (defaults applied); raises listing every offending name."""
    if not isinstance(values, dict):
        raise RenderError("variables must be an object.", fields={"variables": ["Must be an object."]})
    errors: FieldErrors = {}
    for name in values:
        if name not in variables:
            errors[f"variables.{name}"] = ["Unknown variable; this version does not declare it."]
    resolved: dict[str, Any] = {}
    for name, spec in variables.items():
        if name in values:
            value = values[name]
            if not _type_matches(value, spec["type"]):
                errors[f"variables.{name}"] = [f"Expected {spec['type']}, got {_json_type(value)}."]
                continue
            resolved[name] = value
        elif "default" in spec:
            resolved[name] = spec["default"]
        elif spec["required"]:
            errors[f"variables.{name}"] = ["Required variable is missing."]
        # An optional variable without default stays undefined; templates guard it with `is defined`.
    if errors:
        raise RenderError("The variables do not match this version's schema.", fields=errors)
    return resolved


def _json_type(value: Any) -> str:
    for name in VARIABLE_TYPES:
        if _type_matches(value, name):
            return name
    return "null" if value is None else type(value).__name__


def _render_one(source: str, values: dict[str, Any], field: str, budget: int) -> str:
    """Renders `source`, refusing output longer than `budget` characters.

    Streamed and counted while it is produced: a 100 kB template that repeats a 1 MB variable
    would otherwise build gigabytes in memory before its length could be checked."""
    parts: list[str] = []
    size = 0
    try:
        for part in _env.from_string(source).generate(values):
            size += len(part)
            if size > budget:
                raise RenderError(
                    "The rendered prompt is too large.",
                    fields={field: [f"The rendered prompt is longer than {MAX_RENDERED_CHARS} characters."]},
                )
            parts.append(part)
    except (SecurityError, UndefinedError, TemplateError, ArithmeticError, TypeError, ValueError, MemoryError) as exc:
        raise RenderError("The template failed to render.", fields={field: [str(exc)]}) from None
    return "".join(parts)


def render(
    *, kind: str, template: str, messages: list[dict[str, Any]], variables: dict[str, dict[str, Any]], values: Any
) -> dict[str, Any]:
    """{"kind": "text", "text": ...} or {"kind": "chat", "messages": [...]}; at most MAX_RENDERED_CHARS in all."""
    resolved = resolve_values(variables, values)
    if kind == "text":
        return {"kind": "text", "text": _render_one(template, resolved, "template", MAX_RENDERED_CHARS)}
    rendered: list[dict[str, Any]] = []
    budget = MAX_RENDERED_CHARS
    for i, m in enumerate(messages):
        content = _render_one(m["content"], resolved, f"messages.{i}.content", budget)
        budget -= len(content)
        rendered.append({"role": m["role"], "content": content})
    return {"kind": "chat", "messages": rendered}
