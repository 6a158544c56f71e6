"""LLM-as-judge: a managed prompt of the project judges the output, in a run of its own.

The judge prompt is versioned like any other. Its version declares which of the variables it wants
among output, expected_output, reference and input (the example's variables as JSON text); it is
run through runs.services.run_create(inline=True) and runs.inline.run_inline, as the gateway runs a
call, so the judge's call is recorded, rate-limited, budgeted and charged to the scoring project and
key. Options are checked for shape only: they may be checked before the project is known, so the
prompt is looked up when scoring, and a prompt that is missing then fails the score.
"""

import json
import re
from typing import Any

from evals.scorers.base import ScoreContext, ScoreInput, Scorer, ScoreResult, ScorerOptionsError, ScoringFailed
from evals.scorers.options import number_option, options_take, text_option
from llmops.errors import DomainError, ValidationFailed
from providers import checks as provider_checks
from runs import checks as run_checks
from runs import inline, services

JUDGE_VARIABLES = ("output", "expected_output", "reference", "input")
# How much of an answer an out-of-format error quotes.
QUOTED_PREFIX = 200

_FENCE = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.S | re.I)
_SCORE_LINE = re.compile(r"^[\s*#_]*score[\s*_]*[:=]\s*\**\s*([-+]?\d+(?:\.\d+)?)", re.I | re.M)
_REASON_LINE = re.compile(r"^[\s*#_]*reason[\s*_]*[:=]\s*\**\s*(.*)", re.I | re.M | re.S)


class JudgeAnswerInvalid(ValueError):
    """The judge's answer holds no score in a format we read."""


def _json_answer(text: str) -> dict[str, Any] | None:
    """The first JSON object with a "score" in the text: in a ```json fence, or anywhere in it."""
    candidates = [match.group(1) for match in _FENCE.finditer(text)]
    decoder = json.JSONDecoder()
    for source in candidates:
        try:
            data = json.loads(source)
        except ValueError:
            continue
        if isinstance(data, dict) and "score" in data:
            return data
    for start in [index for index, char in enumerate(text) if char == "{"][:50]:
        try:
            data, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(data, dict) and "score" in data:
            return data
    return None


def judge_answer_parse(text: str) -> tuple[float, str]:
    """(score, reason) from a judge's answer: a JSON object {"score": n, "reason": "..."} (maybe in a
    ```json fence or among other text), else lines "Score: n" and "Reason: ...". JudgeAnswerInvalid
    when neither is there."""
    data = _json_answer(text)
    if data is not None:
        score = data["score"]
        if isinstance(score, str):
            try:
                score = float(score.strip())
            except ValueError:
                raise JudgeAnswerInvalid(f"its score {score!r} is not a number") from None
        if isinstance(score, bool) or not isinstance(score, int | float) or score != score:
            raise JudgeAnswerInvalid(f"its score {score!r} is not a number")
        reason = data.get("reason")
        return float(score), reason.strip() if isinstance(reason, str) else ""
    line = _SCORE_LINE.search(text)
    if line is None:
        raise JudgeAnswerInvalid('neither a JSON object with a "score" nor a "Score:" line')
    reason_line = _REASON_LINE.search(text)
    reason = reason_line.group(1).strip() if reason_line else ""
    return float(line.group(1)), reason


def _quoted(text: str) -> str:
    prefix = " ".join(text.split())[:QUOTED_PREFIX]
    return repr(prefix + ("..." if len(text) > QUOTED_PREFIX else ""))


class LLMJudge(Scorer):
    name = "llm_judge"
    description = (
        "A managed prompt of the project judges the output, in a run of its own (recorded and charged). "
        "Options: prompt (its name, required), label or version (default: production, else the latest), "
        "scale (the highest score, default 1), model (overrides the version's, '<provider>/<model id>'). "
        "The version may declare the variables output, expected_output, reference and input (the example's "
        'variables as JSON). It answers {"score": n, "reason": "..."} or lines "Score: n" / "Reason: ..."; '
        "the value is score / scale."
    )

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options_take(options, name=self.name, extra=("prompt", "label", "version", "scale", "model"))
        checked: dict[str, Any] = {"prompt": text_option(options.get("prompt"), field="prompt")}
        if "label" in options and "version" in options:
            raise ScorerOptionsError(
                "Give a label or a version, not both.",
                fields={"label": ["Give a label or a version."], "version": ["Give a label or a version."]},
            )
        if "label" in options:
            checked["label"] = text_option(options["label"], field="label")
        if "version" in options:
            version = options["version"]
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise ScorerOptionsError("Invalid version.", fields={"version": ["A version number (1, 2, ...)."]})
            checked["version"] = version
        checked["scale"] = number_option(options.get("scale", 1), field="scale", above=0)
        if "model" in options:
            try:
                checked["model"] = provider_checks.model_shape_check(model=options["model"], field="model")
            except ValidationFailed as exc:
                raise ScorerOptionsError(exc.message, fields=exc.fields) from None
        return checked

    def score(self, item: ScoreInput, *, context: ScoreContext) -> ScoreResult:
        name = self.options["prompt"]
        try:
            version = run_checks.prompt_version_check(
                project=context.project,
                prompt_ref=name,
                prompt_version_id=None,
                version=self.options.get("version"),
                label=self.options.get("label"),
            )
        except DomainError as exc:
            problems = "; ".join(problem for messages in exc.fields.values() for problem in messages)
            raise ScoringFailed(f"The judge prompt {name!r} cannot be used: {problems or exc.message}") from None
        values = {
            "output": item.output,
            "expected_output": item.expected_output,
            "reference": item.reference,
            "input": json.dumps(item.variables, ensure_ascii=False, sort_keys=True),
        }
        declared = set(version.variables or {})
        try:
            run, _ = services.run_create(
                project=context.project,
                created_by=context.created_by,
                api_key=context.api_key,
                prompt_version_id=version.pk,
                variables={key: value for key, value in values.items() if key in declared},
                model=self.options.get("model"),
                metadata={"scorer": self.name},
                inline=True,
            )
        except DomainError as exc:
            raise ScoringFailed(f"The judge's run was refused ({exc.code}): {exc.message}") from None
        try:
            run = inline.run_inline(run)
        except inline.RunFailed as failed:
            raise ScoringFailed(
                f"The judge's run failed ({failed.error.code}): {failed.error.message}", judge_run_id=failed.run.pk
            ) from None
        answer = run.output or ""
        scale = self.options["scale"]
        try:
            score, reason = judge_answer_parse(answer)
        except JudgeAnswerInvalid as exc:
            raise ScoringFailed(
                f"The judge answered out of format: {exc}: {_quoted(answer)}", judge_run_id=run.pk
            ) from None
        if not 0 <= score <= scale:
            raise ScoringFailed(
                f"The judge answered out of format: score {score:g} is outside [0, {scale:g}]: {_quoted(answer)}",
                judge_run_id=run.pk,
            )
        return ScoreResult(value=score / scale, reason=reason or f"Judged {score:g} of {scale:g}.", judge_run_id=run.pk)
