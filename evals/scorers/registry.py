"""Scorers by name: the built-in ones (BUILTIN) and the custom ones named in settings.EVALS_SCORERS.

An experiment's `scorers` are specs, `{"name": ..., "options": {...}, "threshold": 0.5}`;
`scorer_specs_check` validates them all (unknown name, bad options, threshold out of [0, 1]) as
field errors keyed `scorers.<index>.<field>`, before anything is created; `scorer_build` makes the
scorer of one checked spec.
"""

from functools import cache
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from evals.scorers.base import ScoreContext, ScoreInput, Scorer, ScoreResult, ScorerOptionsError, ScoringFailed
from llmops.errors import FieldErrors, ValidationFailed

# Dotted paths of the built-in scorers (evals.scorers.<module>.<class>).
BUILTIN: list[str] = [
    "evals.scorers.text.ExactMatch",
    "evals.scorers.text.NormalizedMatch",
    "evals.scorers.text.Contains",
    "evals.scorers.text.Regex",
    "evals.scorers.text.Similarity",
    "evals.scorers.structured.JsonValid",
    "evals.scorers.structured.JsonSchema",
    "evals.scorers.structured.Numeric",
    "evals.scorers.embedding.EmbeddingSimilarity",
    "evals.scorers.judge.LLMJudge",
]


@cache
def scorer_classes() -> dict[str, type[Scorer]]:
    """Every scorer by name; a custom one may not reuse a built-in's name."""
    classes: dict[str, type[Scorer]] = {}
    for path in [*BUILTIN, *settings.EVALS_SCORERS]:
        cls = import_string(path)
        if not (isinstance(cls, type) and issubclass(cls, Scorer)) or not cls.name:
            raise TypeError(f"{path} is not a evals.scorers.base.Scorer subclass with a name.")
        if cls.name in classes:
            raise TypeError(f"Two scorers are named {cls.name!r}: {path} and {classes[cls.name].__module__}.")
        classes[cls.name] = cls
    return classes


def scorer_specs_check(specs: Any, *, field: str = "scorers") -> list[dict[str, Any]]:
    """The specs, normalized to {"name", "options", "threshold"}, or a ValidationFailed naming each problem."""
    if not isinstance(specs, list) or not specs:
        raise ValidationFailed("Give at least one scorer.", fields={field: ["A non-empty list of scorers."]})
    classes = scorer_classes()
    problems: FieldErrors = {}
    checked: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        where = f"{field}.{index}"
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, dict):
            problems[where] = ["A scorer name or an object with name, options and threshold."]
            continue
        unknown = set(spec) - {"name", "options", "threshold"}
        for key in sorted(unknown):
            problems[f"{where}.{key}"] = ["Unknown field."]
        name = spec.get("name")
        cls = classes.get(name) if isinstance(name, str) else None
        if cls is None:
            problems[f"{where}.name"] = [f"No scorer named {name!r} (known: {', '.join(sorted(classes))})."]
            continue
        if name in seen:
            problems[f"{where}.name"] = [f"The scorer {name!r} is listed twice."]
            continue
        seen.add(cls.name)
        options = spec.get("options", {})
        if not isinstance(options, dict):
            problems[f"{where}.options"] = ["Must be an object."]
            continue
        threshold = spec.get("threshold", cls.default_threshold)
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
            problems[f"{where}.threshold"] = ["A number from 0 to 1."]
            continue
        try:
            scorer = cls(options)
        except ScorerOptionsError as exc:
            for key, messages in exc.fields.items():
                problems[f"{where}.options.{key}"] = messages
            if not exc.fields:
                problems[f"{where}.options"] = [exc.message]
            continue
        checked.append({"name": name, "options": scorer.options, "threshold": float(threshold)})
    if problems:
        raise ValidationFailed("Invalid scorers.", fields=problems)
    return checked


class UnusableScorer(Scorer):
    """Stands in for a scorer whose checked options no longer check (the embedding model's provider
    was disabled since the experiment began): every score fails with the reason, and the experiment
    goes on."""

    def __init__(self, name: str, problem: str):
        self.options = {}
        self.problem = f"The {name} scorer cannot be used any more: {problem}"

    def score(self, item: ScoreInput, *, context: ScoreContext) -> ScoreResult:
        raise ScoringFailed(self.problem)


def scorer_build(spec: dict[str, Any]) -> tuple[Scorer, float]:
    """The scorer of a spec that scorer_specs_check returned, and its pass threshold. Options are
    checked again as the scorer is built; ones that no longer pass give an UnusableScorer."""
    try:
        scorer = scorer_classes()[spec["name"]](spec["options"])
    except ScorerOptionsError as exc:
        problems = [problem for messages in exc.fields.values() for problem in messages]
        scorer = UnusableScorer(spec["name"], " ".join(problems) or exc.message)
    return scorer, spec["threshold"]
