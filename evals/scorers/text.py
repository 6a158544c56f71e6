"""Scorers that compare the output with the example's expected output as text."""

import re
import unicodedata
from typing import Any

from rapidfuzz import fuzz

from evals.scorers.base import ScoreContext, ScoreInput, Scorer, ScoreResult, ScorerOptionsError, ScoringFailed
from evals.scorers.options import options_take, text_option

# regex: Python's `re` has no timeout (and the `regex` package is not a dependency), so a pattern's
# cost is bounded by refusing nested unbounded quantifiers at check time and by searching only the
# first REGEX_MAX_OUTPUT characters of an output.
REGEX_MAX_PATTERN = 1000
REGEX_MAX_OUTPUT = 10_000


class ExactMatch(Scorer):
    name = "exact_match"
    description = "1 when the output equals the expected output exactly, else 0."

    def score(self, item: ScoreInput, *, context: ScoreContext) -> ScoreResult:
        matched = item.output == item.expected_output
        return ScoreResult(value=1.0 if matched else 0.0, reason="Equal." if matched else "Not equal.")


def _normalize(text: str, *, unicode: bool, case: bool, punctuation: bool, whitespace: bool) -> str:
    if unicode:
        text = unicodedata.normalize("NFKC", text)
    if case:
        text = text.casefold()
    if punctuation:
        text = "".join(char for char in text if not unicodedata.category(char).startswith("P"))
    if whitespace:
        text = " ".join(text.split())
    return text


class NormalizedMatch(Scorer):
    name = "normalized_match"
    description = (
        "1 when the output equals the expected output once both are normalized, else 0. Options (booleans, "
        "all true by default): unicode (NFKC), case (case-folded), punctuation (removed), whitespace "
        "(runs collapsed to one space, ends trimmed)."
    )

    FLAGS = ("unicode", "case", "punctuation", "whitespace")

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return options_take(options, name=self.name, booleans=dict.fromkeys(self.FLAGS, True))

    def score(self, item: ScoreInput, *, context: ScoreContext) -> ScoreResult:
        matched = _normalize(item.output, **self.options) == _normalize(item.expected_output, **self.options)
        return ScoreResult(value=1.0 if matched else 0.0, reason="Equal once normalized." if matched else "Not equal.")


class Contains(Scorer):
    name = "contains"
    description = (
        "1 when the output contains the expected output, else 0. Options: text (one substring instead), "
        "any (a list: at least one of them), all (a list: every one of them); ignore_case (default false)."
    )

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        checked = options_take(options, name=self.name, booleans={"ignore_case": False}, extra=("text", "any", "all"))
        given = [key for key in ("text", "any", "all") if key in options]
        if len(given) > 1:
            raise ScorerOptionsError(
                "Give one of text, any and all.", fields={key: ["Give only one of text, any and all."] for key in given}
            )
        if "text" in options:
            checked["text"] = text_option(options["text"], field="text")
        for key in ("any", "all"):
            if key in options:
                value = options[key]
                if not isinstance(value, list) or not value:
                    raise ScorerOptionsError(f"Invalid {key}.", fields={key: ["A non-empty list of strings."]})
                checked[key] = [text_option(text, field=f"{key}.{index}") for index, text in enumerate(value)]
        return checked

    def score(self, item: ScoreInput, *, context: ScoreContext) -> ScoreResult:
        ignore_case = self.options["ignore_case"]
        output = item.output.casefold() if ignore_case else item.output

        def found(text: str) -> bool:
            return (text.casefold() if ignore_case else text) in output

        if "any" in self.options:
            hits = [text for text in self.options["any"] if found(text)]
            if hits:
                return ScoreResult(value=1.0, reason=f"Contains {hits[0]!r}.")
            return ScoreResult(value=0.0, reason="Contains none of the texts.")
        if "all" in self.options:
            missing = [text for text in self.options["all"] if not found(text)]
            if missing:
                shown = ", ".join(repr(text) for text in missing[:5])
                return ScoreResult(value=0.0, reason=f"Missing {len(missing)}: {shown}.")
            return ScoreResult(value=1.0, reason="Contains every text.")
        text = self.options.get("text", item.expected_output)
        if not text:
            raise ScoringFailed("The example has no expected output to look for.")
        matched = found(text)
        return ScoreResult(value=1.0 if matched else 0.0, reason="Contained." if matched else "Not contained.")


def _nested_unbounded_repeat(parsed: Any, *, inside_repeat: bool = False) -> bool:
    """Whether a parsed pattern repeats, without bound, something that itself repeats without
    bound, such as `(a+)+` or `(a*)*`: the shape of catastrophic backtracking."""
    for op, value in parsed:
        name = str(op)
        children: list[Any] = []
        repeat = False
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            repeat = value[1] > 100  # MAXREPEAT (no upper bound) is a large int
            if repeat and inside_repeat:
                return True
            children = [value[2]]
        elif name in ("SUBPATTERN", "ASSERT", "ASSERT_NOT", "ATOMIC_GROUP"):
            children = [value[-1]]
        elif name == "BRANCH":
            children = list(value[1])
        if any(_nested_unbounded_repeat(child, inside_repeat=inside_repeat or repeat) for child in children):
            return True
    return False


class Regex(Scorer):
    name = "regex"
    description = (
        "1 when the output matches the regular expression `pattern` (Python `re`), else 0. Options: "
        "pattern (required), full (the whole output must match; default false: a match anywhere), "
        f"ignore_case (default false). Only the first {REGEX_MAX_OUTPUT} characters of the output are "
        "searched, and a pattern that nests unbounded repeats, like (a+)+, is refused."
    )

    def __init__(self, options: dict[str, Any]):
        super().__init__(options)
        flags = re.IGNORECASE if self.options["ignore_case"] else 0
        self.compiled = re.compile(self.options["pattern"], flags)

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        checked = options_take(
            options, name=self.name, booleans={"full": False, "ignore_case": False}, extra=("pattern",)
        )
        pattern = options.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise ScorerOptionsError("Give a pattern.", fields={"pattern": ["A regular expression (a string)."]})
        if len(pattern) > REGEX_MAX_PATTERN:
            raise ScorerOptionsError(
                "The pattern is too long.", fields={"pattern": [f"At most {REGEX_MAX_PATTERN} characters."]}
            )
        try:
            parsed = re._parser.parse(pattern)  # type: ignore[attr-defined]
            re.compile(pattern)
        except re.error as exc:
            raise ScorerOptionsError(
                "Invalid pattern.", fields={"pattern": [f"Not a valid regular expression: {exc}."]}
            ) from None
        if _nested_unbounded_repeat(parsed):
            raise ScorerOptionsError(
                "The pattern could take exponential time.",
                fields={
                    "pattern": ["Nested unbounded repeats (like (a+)+) are not allowed: they can backtrack forever."]
                },
            )
        checked["pattern"] = pattern
        return checked

    def score(self, item: ScoreInput, *, context: ScoreContext) -> ScoreResult:
        output = item.output[:REGEX_MAX_OUTPUT]
        match = self.compiled.fullmatch(output) if self.options["full"] else self.compiled.search(output)
        if match is None:
            return ScoreResult(value=0.0, reason="No match.")
        return ScoreResult(value=1.0, reason=f"Matched {match.group(0)[:100]!r}.")


class Similarity(Scorer):
    name = "similarity"
    description = (
        "How alike the output and the expected output are, from 0 to 1 (rapidfuzz's score / 100). Options: "
        "method: ratio (default; edit distance), token_sort_ratio (word order ignored) or partial_ratio (the "
        "best matching substring); ignore_case (default false)."
    )
    default_threshold = 0.8

    METHODS = {"ratio": fuzz.ratio, "token_sort_ratio": fuzz.token_sort_ratio, "partial_ratio": fuzz.partial_ratio}

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        checked = options_take(options, name=self.name, booleans={"ignore_case": False}, extra=("method",))
        method = options.get("method", "ratio")
        if method not in self.METHODS:
            raise ScorerOptionsError("Unknown method.", fields={"method": [f"One of {', '.join(self.METHODS)}."]})
        checked["method"] = method
        return checked

    def score(self, item: ScoreInput, *, context: ScoreContext) -> ScoreResult:
        output, expected = item.output, item.expected_output
        if self.options["ignore_case"]:
            output, expected = output.casefold(), expected.casefold()
        value = self.METHODS[self.options["method"]](output, expected) / 100
        value = min(1.0, max(0.0, float(value)))
        return ScoreResult(value=value, reason=f"{self.options['method']} {value:.3f}.")
