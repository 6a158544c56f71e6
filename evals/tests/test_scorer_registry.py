"""The scorer registry (built-in and custom scorers, specs checked) and GET /api/v1/scorers."""

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import Scope
from evals.scorers import registry
from evals.scorers.base import ScoreContext, ScoreInput, Scorer, ScoreResult, ScorerOptionsError
from evals.scorers.registry import BUILTIN, scorer_build, scorer_classes, scorer_specs_check
from evals.tests.scorer_helpers import NO_CONTEXT
from llmops.errors import ValidationFailed

BUILTIN_NAMES = {
    "exact_match",
    "normalized_match",
    "contains",
    "regex",
    "similarity",
    "json_valid",
    "json_schema",
    "numeric",
    "embedding_similarity",
    "llm_judge",
}


class Shouting(Scorer):
    """A custom scorer, as a deployment would name it in EVALS_SCORERS."""

    name = "shouting"
    description = "1 when the output is in capitals."
    default_threshold = 1.0

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        unknown = set(options) - {"min_length"}
        if unknown:
            raise ScorerOptionsError("Unknown.", fields={key: ["Unknown option."] for key in unknown})
        min_length = options.get("min_length", 1)
        if not isinstance(min_length, int) or min_length < 1:
            raise ScorerOptionsError("Invalid min_length.", fields={"min_length": ["A positive integer."]})
        return {"min_length": min_length}

    def score(self, item: ScoreInput, *, context: ScoreContext) -> ScoreResult:
        loud = item.output.isupper() and len(item.output) >= self.options["min_length"]
        return ScoreResult(value=1.0 if loud else 0.0)


class ExactMatchAgain(Shouting):
    name = "exact_match"  # a built-in's name


class NotAScorer:
    name = "plain"


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    """scorer_classes() is cached; a test that changes EVALS_SCORERS must not leak into the next."""
    scorer_classes.cache_clear()
    yield
    scorer_classes.cache_clear()


def test_every_builtin_is_registered_with_a_description() -> None:
    classes = scorer_classes()
    assert set(classes) == BUILTIN_NAMES
    assert len(BUILTIN) == len(BUILTIN_NAMES)
    for cls in classes.values():
        assert cls.description
        assert 0 <= cls.default_threshold <= 1


def test_specs_are_normalized() -> None:
    checked = scorer_specs_check(
        ["exact_match", {"name": "similarity", "options": {"method": "token_sort_ratio"}, "threshold": 0.9}]
    )
    assert checked == [
        {"name": "exact_match", "options": {}, "threshold": 0.5},
        {"name": "similarity", "options": {"method": "token_sort_ratio", "ignore_case": False}, "threshold": 0.9},
    ]
    scorer, threshold = scorer_build(checked[1])
    assert threshold == 0.9
    assert scorer.score(ScoreInput("b a", "a b", "", {}), context=NO_CONTEXT).value == 1.0


def test_spec_errors_are_keyed_by_index_and_field() -> None:
    with pytest.raises(ValidationFailed) as info:
        scorer_specs_check(
            [
                {"name": "exact_match"},
                {"name": "nope"},
                {"name": "regex", "options": {"pattern": "("}},
                {"name": "contains", "threshold": 2},
                {"name": "numeric", "weight": 1},
                {"name": "exact_match"},
                {"name": "json_valid", "options": []},
                7,
            ]
        )
    fields = info.value.fields
    assert set(fields) == {
        "scorers.1.name",
        "scorers.2.options.pattern",
        "scorers.3.threshold",
        "scorers.4.weight",
        "scorers.5.name",
        "scorers.6.options",
        "scorers.7",
    }
    assert fields["scorers.1.name"][0].startswith("No scorer named 'nope' (known: contains, embedding_similarity,")
    assert fields["scorers.5.name"] == ["The scorer 'exact_match' is listed twice."]
    assert fields["scorers.3.threshold"] == ["A number from 0 to 1."]


@pytest.mark.parametrize("specs", [[], None, "exact_match"])
def test_no_scorers_is_an_error(specs: Any) -> None:
    with pytest.raises(ValidationFailed) as info:
        scorer_specs_check(specs)
    assert info.value.fields == {"scorers": ["A non-empty list of scorers."]}


@override_settings(EVALS_SCORERS=["evals.tests.test_scorer_registry.Shouting"])
def test_a_custom_scorer_is_registered_checked_and_built() -> None:
    assert scorer_classes()["shouting"] is Shouting

    [spec] = scorer_specs_check([{"name": "shouting", "options": {"min_length": 3}}])
    assert spec == {"name": "shouting", "options": {"min_length": 3}, "threshold": 1.0}
    scorer, _ = scorer_build(spec)
    assert scorer.score(ScoreInput("HEY", "", "", {}), context=NO_CONTEXT).value == 1.0
    assert scorer.score(ScoreInput("HI", "", "", {}), context=NO_CONTEXT).value == 0.0

    with pytest.raises(ValidationFailed) as info:
        scorer_specs_check([{"name": "shouting", "options": {"min_length": 0}}])
    assert info.value.fields == {"scorers.0.options.min_length": ["A positive integer."]}


def test_without_the_setting_a_custom_scorer_is_unknown() -> None:
    with pytest.raises(ValidationFailed) as info:
        scorer_specs_check(["shouting"])
    assert list(info.value.fields) == ["scorers.0.name"]


@override_settings(EVALS_SCORERS=["evals.tests.test_scorer_registry.ExactMatchAgain"])
def test_a_custom_scorer_may_not_take_a_builtins_name() -> None:
    with pytest.raises(TypeError, match="Two scorers are named 'exact_match'"):
        scorer_classes()


@override_settings(
    EVALS_SCORERS=["evals.tests.test_scorer_registry.Shouting", "evals.tests.test_scorer_registry.Shouting"]
)
def test_the_same_custom_scorer_twice_is_refused() -> None:
    with pytest.raises(TypeError, match="Two scorers are named 'shouting'"):
        scorer_classes()


@pytest.mark.parametrize(
    "path",
    ["evals.tests.test_scorer_registry.NotAScorer", "evals.scorers.base.Scorer", "evals.scorers.base.ScoreInput"],
)
def test_a_path_that_is_not_a_named_scorer_is_refused(path: str) -> None:
    with (
        override_settings(EVALS_SCORERS=[path]),
        pytest.raises(TypeError, match=r"is not a evals\.scorers\.base\.Scorer"),
    ):
        scorer_classes()


@override_settings(EVALS_SCORERS=["evals.tests.test_scorer_registry.Missing"])
def test_a_path_that_does_not_import_is_refused() -> None:
    with pytest.raises(ImportError):
        registry.scorer_classes()


# --- GET /api/v1/scorers --------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_endpoint_lists_every_scorer(alice_client: APIClient) -> None:
    response = alice_client.get("/api/v1/scorers")

    assert response.status_code == 200
    body = response.json()
    assert [item["name"] for item in body] == sorted(BUILTIN_NAMES)
    by_name = {item["name"]: item for item in body}
    assert by_name["exact_match"] == {
        "name": "exact_match",
        "description": "1 when the output equals the expected output exactly, else 0.",
        "default_threshold": 0.5,
    }
    assert by_name["similarity"]["default_threshold"] == 0.8


@pytest.mark.django_db
@override_settings(EVALS_SCORERS=["evals.tests.test_scorer_registry.Shouting"])
def test_the_endpoint_lists_custom_scorers(alice_client: APIClient) -> None:
    body = alice_client.get("/api/v1/scorers").json()
    assert {"name": "shouting", "description": "1 when the output is in capitals.", "default_threshold": 1.0} in body


@pytest.mark.django_db
def test_the_endpoint_needs_evals_read(alice, anon_client: APIClient) -> None:
    assert anon_client.get("/api/v1/scorers").status_code == 401

    _, plaintext = account_services.api_key_create(
        project=alice.personal_project, created_by=alice, name="runs only", scopes=[Scope.RUNS_READ]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert client.get("/api/v1/scorers").status_code == 403

    _, plaintext = account_services.api_key_create(
        project=alice.personal_project, created_by=alice, name="evals", scopes=[Scope.EVALS_READ]
    )
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert client.get("/api/v1/scorers").status_code == 200
