"""Scoring one output with a scorer built as an experiment builds it: spec checked, then built."""

from typing import Any, cast

import pytest

from accounts.models import Project
from evals.scorers.base import ScoreContext, ScoreInput, ScoreResult
from evals.scorers.registry import scorer_build, scorer_specs_check
from llmops.errors import ValidationFailed

# For the scorers that never read the context (they make no run of their own).
NO_CONTEXT = ScoreContext(project=cast(Project, None), created_by=None, api_key=None)


def score(
    name: str,
    output: str,
    expected: str = "",
    *,
    options: dict[str, Any] | None = None,
    context: ScoreContext = NO_CONTEXT,
    reference: str = "",
    variables: dict[str, Any] | None = None,
) -> ScoreResult:
    [spec] = scorer_specs_check([{"name": name, "options": options or {}}])
    scorer, _ = scorer_build(spec)
    item = ScoreInput(output=output, expected_output=expected, reference=reference, variables=variables or {})
    result = scorer.score(item, context=context)
    assert 0 <= result.value <= 1
    return result


def options_errors(name: str, options: Any) -> dict[str, list[str]]:
    """The field errors scorer_specs_check gives for these options (keyed scorers.0.options.<option>)."""
    with pytest.raises(ValidationFailed) as info:
        scorer_specs_check([{"name": name, "options": options}])
    return info.value.fields
