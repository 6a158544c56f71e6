"""Small checks of scorer options that several scorers share; each raises ScorerOptionsError naming the option."""

from typing import Any

from evals.scorers.base import ScorerOptionsError


def options_take(
    options: dict[str, Any], *, name: str, booleans: dict[str, bool] | None = None, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The boolean options (defaulted) of `options`; an unknown key (neither a boolean nor in `extra`)
    or a non-boolean value is a ScorerOptionsError. The caller checks the `extra` keys itself."""
    booleans = booleans or {}
    unknown = sorted(set(options) - set(booleans) - set(extra))
    if unknown:
        raise ScorerOptionsError(
            f"Unknown options for the {name} scorer: {', '.join(unknown)}.",
            fields={key: ["Unknown option."] for key in unknown},
        )
    checked: dict[str, Any] = {}
    for key, default in booleans.items():
        value = options.get(key, default)
        if not isinstance(value, bool):
            raise ScorerOptionsError(f"Invalid {key}.", fields={key: ["Must be true or false."]})
        checked[key] = value
    return checked


def text_option(value: Any, *, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ScorerOptionsError(f"Invalid {field}.", fields={field: ["A non-empty string."]})
    return value


def number_option(value: Any, *, field: str, minimum: float | None = None, above: float | None = None) -> float:
    """A finite number (not a boolean), at least `minimum` / greater than `above` when given."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value != value
        or value
        in (
            float("inf"),
            float("-inf"),
        )
    ):
        raise ScorerOptionsError(f"Invalid {field}.", fields={field: ["A number."]})
    if minimum is not None and value < minimum:
        raise ScorerOptionsError(f"Invalid {field}.", fields={field: [f"At least {minimum:g}."]})
    if above is not None and value <= above:
        raise ScorerOptionsError(f"Invalid {field}.", fields={field: [f"Greater than {above:g}."]})
    return float(value)
