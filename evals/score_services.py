"""Writes for scores a client gives a run (feedback, a human's grade): Score with source=api."""

import math
from typing import Any

from accounts.models import Project, User
from evals.models import Score
from llmops.errors import Conflict, FieldErrors, ValidationFailed
from runs import selectors as run_selectors

MAX_SCORE_NAME = 100
MAX_SCORE_REASON = 10_000


def score_check(*, name: Any, value: Any, reason: Any) -> None:
    """A ValidationFailed naming each bad field: `name` 1 to 100 characters (not blank), `value` a
    finite number in [0, 1] (not a boolean), `reason` a string of at most 10,000 characters."""
    errors: FieldErrors = {}
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_SCORE_NAME:
        errors["name"] = [f"Must be 1 to {MAX_SCORE_NAME} characters, not blank."]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errors["value"] = ["Must be a number from 0 to 1."]
    elif not (0 <= value <= 1):
        errors["value"] = ["Must be between 0 and 1."]
    if not isinstance(reason, str) or len(reason) > MAX_SCORE_REASON:
        errors["reason"] = [f"Must be a string of at most {MAX_SCORE_REASON} characters."]
    if errors:
        raise ValidationFailed("Invalid score.", fields=errors)


def score_record(
    *, project: Project, run_id: str, name: str, value: float, reason: str = "", created_by: User | None
) -> Score:
    """Records a client's score of a finished run of `project` (another project's run: NotFound).
    Append-only: scoring a run again under the same name adds a score; reports take the mean."""
    score_check(name=name, value=value, reason=reason)
    run = run_selectors.run_get(project=project, run_id=run_id)
    if not run.is_finished:
        raise Conflict(
            f"The run is {run.status}; only a finished run can be scored.",
            fields={"run": ["Not finished yet."]},
            code="run_not_finished",
        )
    return Score.objects.create(
        project=project,
        run=run,
        name=name.strip(),
        value=float(value),
        reason=reason,
        source=Score.Source.API,
        created_by=created_by,
    )
