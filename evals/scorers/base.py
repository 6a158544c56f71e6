"""The interface every scorer implements, built-in or custom (settings.EVALS_SCORERS).

A scorer is a class with a unique `name`; `check_options` validates the options an experiment
gives it (raising ScorerOptionsError naming the option) before anything runs, and `score` judges
one output. A score's `value` is in [0, 1]; `passed` is `value >= threshold` unless the scorer
says otherwise. A scorer that cannot score (a judge that answered out of format, an embeddings
endpoint that failed) raises ScoringFailed: the example's score is stored with no value and the
reason, and the experiment goes on.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar

from accounts.models import APIKey, Project, User


class ScorerOptionsError(Exception):
    """An experiment gave a scorer options it cannot use. `fields`: option name -> messages."""

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class ScoringFailed(Exception):
    """The scorer could not score this output; the message is stored as the score's error.
    `judge_run_id`: the run the scorer made before it failed (a judge that answered out of format)."""

    def __init__(self, message: str, *, judge_run_id: Any = None):
        super().__init__(message)
        self.judge_run_id = judge_run_id


@dataclass(frozen=True)
class ScoreInput:
    """What a scorer sees of one example and the run made for it."""

    output: str
    expected_output: str
    reference: str
    variables: dict[str, Any]
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ScoreContext:
    """Who scores, for scorers that make runs of their own (the judge: charged to this project and key)."""

    project: Project
    created_by: User | None
    api_key: APIKey | None


@dataclass(frozen=True)
class ScoreResult:
    value: float
    reason: str = ""
    passed: bool | None = None  # None: value >= the spec's threshold
    # The run a scorer made to score (the judge's call), recorded on the score.
    judge_run_id: Any = None


class Scorer:
    """Subclass, set `name` (and `description`, shown in the API), override `score`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # Pass when value >= threshold, unless the experiment's spec sets one.
    default_threshold: ClassVar[float] = 0.5

    def __init__(self, options: dict[str, Any]):
        self.options = self.check_options(options)

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The options, validated (and defaulted); raise ScorerOptionsError naming a bad one."""
        if options:
            raise ScorerOptionsError(
                f"The {self.name} scorer takes no options.", fields={key: ["Unknown option."] for key in options}
            )
        return {}

    def score(self, item: ScoreInput, *, context: ScoreContext) -> ScoreResult:
        raise NotImplementedError
