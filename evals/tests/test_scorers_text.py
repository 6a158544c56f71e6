"""The text scorers: exact_match, normalized_match, contains, regex, similarity."""

import time

import pytest

from evals.scorers.base import ScoringFailed
from evals.scorers.text import REGEX_MAX_OUTPUT
from evals.tests.scorer_helpers import options_errors, score

FULLWIDTH_PARIS = "\uff30\uff21\uff32\uff29\uff33"  # fullwidth letters; NFKC makes them PARIS

# --- exact_match ----------------------------------------------------------------------------------


def test_exact_match() -> None:
    assert score("exact_match", "Paris", "Paris").value == 1.0
    assert score("exact_match", "Paris ", "Paris").value == 0.0
    assert "scorers.0.options.case" in options_errors("exact_match", {"case": True})


# --- normalized_match -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("  The  capital is\nParis. ", "the capital is paris"),
        (FULLWIDTH_PARIS, "paris"),
        ("Paris!!!", "paris"),
        ("ﬁne", "fine"),  # the ligature: NFKC
        ("STRASSE", "straße"),  # case-folded, not just lowered
    ],
)
def test_normalized_match_normalizes_everything_by_default(output: str, expected: str) -> None:
    result = score("normalized_match", output, expected)
    assert result.value == 1.0
    assert result.reason == "Equal once normalized."


def test_normalized_match_still_tells_different_words_apart() -> None:
    assert score("normalized_match", "Paris", "Rome").value == 0.0
    assert score("normalized_match", "par is", "paris").value == 0.0  # whitespace collapses, not vanishes


@pytest.mark.parametrize(
    ("option", "output", "expected"),
    [
        ("case", "Paris", "paris"),
        ("punctuation", "paris.", "paris"),
        ("whitespace", "paris  is", "paris is"),
        ("unicode", FULLWIDTH_PARIS, "paris"),
    ],
)
def test_normalized_match_each_normalization_can_be_turned_off(option: str, output: str, expected: str) -> None:
    assert score("normalized_match", output, expected).value == 1.0
    assert score("normalized_match", output, expected, options={option: False}).value == 0.0


def test_normalized_match_options_are_checked() -> None:
    assert options_errors("normalized_match", {"case": "yes"}) == {"scorers.0.options.case": ["Must be true or false."]}
    assert options_errors("normalized_match", {"accents": True}) == {"scorers.0.options.accents": ["Unknown option."]}


# --- contains -------------------------------------------------------------------------------------


def test_contains_the_expected_output() -> None:
    assert score("contains", "The answer is 42.", "42").value == 1.0
    assert score("contains", "The answer is 41.", "42").value == 0.0
    assert score("contains", "PARIS it is", "paris").value == 0.0
    assert score("contains", "PARIS it is", "paris", options={"ignore_case": True}).value == 1.0


def test_contains_with_no_expected_output_cannot_score() -> None:
    with pytest.raises(ScoringFailed, match="no expected output"):
        score("contains", "anything", "")


def test_contains_text_any_all() -> None:
    assert score("contains", "a red fox", "ignored", options={"text": "fox"}).value == 1.0
    assert score("contains", "a red fox", "fox", options={"text": "dog"}).value == 0.0

    assert score("contains", "a red fox", options={"any": ["dog", "fox"]}).value == 1.0
    assert score("contains", "a red fox", options={"any": ["dog", "cat"]}).value == 0.0

    assert score("contains", "a red fox", options={"all": ["red", "fox"]}).value == 1.0
    missing = score("contains", "a red fox", options={"all": ["red", "dog", "cat"]})
    assert missing.value == 0.0
    assert missing.reason == "Missing 2: 'dog', 'cat'."
    assert score("contains", "A RED FOX", options={"all": ["red", "fox"], "ignore_case": True}).value == 1.0


def test_contains_options_are_checked() -> None:
    both = options_errors("contains", {"text": "a", "any": ["b"]})
    assert set(both) == {"scorers.0.options.text", "scorers.0.options.any"}
    assert options_errors("contains", {"any": []}) == {"scorers.0.options.any": ["A non-empty list of strings."]}
    assert options_errors("contains", {"all": ["ok", 3]}) == {"scorers.0.options.all.1": ["A non-empty string."]}
    assert options_errors("contains", {"text": ""}) == {"scorers.0.options.text": ["A non-empty string."]}


# --- regex ----------------------------------------------------------------------------------------


def test_regex_searches_or_matches_whole() -> None:
    assert score("regex", "Order #12345 shipped", options={"pattern": r"#\d{5}\b"}).value == 1.0
    assert score("regex", "Order #1234 shipped", options={"pattern": r"#\d{5}\b"}).value == 0.0
    assert score("regex", "Order #12345 shipped", options={"pattern": r"#\d{5}", "full": True}).value == 0.0
    assert score("regex", "#12345", options={"pattern": r"#\d{5}", "full": True}).value == 1.0
    assert score("regex", "YES", options={"pattern": "yes"}).value == 0.0
    assert score("regex", "YES", options={"pattern": "yes", "ignore_case": True}).value == 1.0


def test_regex_bad_pattern_is_an_options_error_naming_pattern() -> None:
    errors = options_errors("regex", {"pattern": "(unclosed"})
    assert list(errors) == ["scorers.0.options.pattern"]
    assert errors["scorers.0.options.pattern"][0].startswith("Not a valid regular expression: missing )")
    assert list(options_errors("regex", {})) == ["scorers.0.options.pattern"]
    assert list(options_errors("regex", {"pattern": 5})) == ["scorers.0.options.pattern"]
    assert list(options_errors("regex", {"pattern": "a" * 1001})) == ["scorers.0.options.pattern"]


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(a*)*b", r"(?:x|y+)*z", r"((ab)+)+", r"(?=(a+)+)b"])
def test_regex_refuses_nested_unbounded_repeats(pattern: str) -> None:
    errors = options_errors("regex", {"pattern": pattern})
    assert "Nested unbounded repeats" in errors["scorers.0.options.pattern"][0]


@pytest.mark.parametrize("pattern", [r"a+b+", r"(ab)+", r"\d{1,3}(,\d{3})*", r"(a{2}){3}", r"[a-z]+@[a-z]+\.com"])
def test_regex_allows_ordinary_repeats(pattern: str) -> None:
    score("regex", "x", options={"pattern": pattern})  # no ValidationFailed


def test_regex_searches_only_the_first_characters_of_a_long_output() -> None:
    late = "a" * REGEX_MAX_OUTPUT + "NEEDLE"
    assert score("regex", late, options={"pattern": "NEEDLE"}).value == 0.0
    assert score("regex", "a" * (REGEX_MAX_OUTPUT - 6) + "NEEDLE", options={"pattern": "NEEDLE"}).value == 1.0


def test_regex_stays_fast_on_a_huge_output() -> None:
    started = time.perf_counter()
    assert score("regex", "ab" * 1_000_000, options={"pattern": r"(ab|cd)+x"}).value == 0.0
    assert time.perf_counter() - started < 5


# --- similarity -----------------------------------------------------------------------------------


def test_similarity_ratio_is_rapidfuzz_over_100() -> None:
    assert score("similarity", "kitten", "kitten").value == 1.0
    result = score("similarity", "kitten", "sitting")
    assert result.value == pytest.approx(0.6153846, abs=1e-6)  # fuzz.ratio: 61.538...
    assert result.reason == "ratio 0.615."
    assert score("similarity", "abc", "xyz").value == 0.0


def test_similarity_methods() -> None:
    assert score("similarity", "world hello", "hello world").value < 1.0
    assert score("similarity", "world hello", "hello world", options={"method": "token_sort_ratio"}).value == 1.0
    assert score("similarity", "hello", "well hello there", options={"method": "partial_ratio"}).value == 1.0
    assert score("similarity", "HELLO", "hello").value == 0.0
    assert score("similarity", "HELLO", "hello", options={"ignore_case": True}).value == 1.0


def test_similarity_options_are_checked() -> None:
    errors = options_errors("similarity", {"method": "levenshtein"})
    assert errors == {"scorers.0.options.method": ["One of ratio, token_sort_ratio, partial_ratio."]}
