"""Scorers that compare the output with the example's expected output as text."""

from evals.scorers.base import ScoreContext, ScoreInput, ScoreResult, Scorer


class ExactMatch(Scorer):
    name = "exact_match"
    description = "1 when the output equals the expected output exactly, else 0."

    def score(self, item: ScoreInput, *, context: ScoreContext) -> ScoreResult:
        matched = item.output == item.expected_output
        return ScoreResult(value=1.0 if matched else 0.0, reason="Equal." if matched else "Not equal.")
