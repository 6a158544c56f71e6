"""llm_judge: a managed prompt judges the output in a real run, recorded and charged, over real HTTP."""

import json
from decimal import Decimal
from typing import Any

import pytest

from accounts import services as account_services
from billing.models import CostLog
from billing.tests.factories import ModelPriceFactory
from evals.scorers.base import ScoreContext, ScoreResult, ScoringFailed
from evals.scorers.judge import JudgeAnswerInvalid, judge_answer_parse
from evals.scorers.registry import scorer_specs_check
from evals.tests.scorer_helpers import options_errors, score
from prompts import services as prompt_services
from prompts.tests.factories import prompt_with_version
from providers.tests.fixtures import ProviderFactory
from providers.tests.openai_server import OpenAIServer, answer, error
from runs.models import Run

pytestmark = pytest.mark.usefixtures("fresh_cache")

JUDGE_TEMPLATE = "Grade the answer {{ output }} against {{ expected_output }}. Reply as JSON."
JUDGE_VARIABLES = {"output": {"type": "string"}, "expected_output": {"type": "string"}}


@pytest.fixture
def judge(alice, provider_factory: ProviderFactory):
    """The project's judge prompt on the test server's model, with a price so its runs cost money."""
    provider_factory()
    ModelPriceFactory(provider="testllm", model="test-model")
    prompt, _ = prompt_with_version(
        alice, name="judge", template=JUDGE_TEMPLATE, variables=JUDGE_VARIABLES, model="testllm/test-model"
    )
    return prompt


@pytest.fixture
def context(alice) -> ScoreContext:
    key, _ = account_services.api_key_create(project=alice.personal_project, created_by=alice, name="experiments")
    return ScoreContext(project=alice.personal_project, created_by=alice, api_key=key)


def _judged(context: ScoreContext, **options: Any) -> ScoreResult:
    """The judge's score of the output "Paris" against the expected "Paris, France"."""
    return score("llm_judge", "Paris", "Paris, France", options={"prompt": "judge", **options}, context=context)


def _assert_charged_run(run_id, context: ScoreContext, *, output: str) -> Run:
    run = Run.objects.get(pk=run_id)
    assert run.status == Run.Status.SUCCEEDED
    assert run.output == output
    assert run.project == context.project
    assert run.api_key == context.api_key
    assert run.created_by == context.created_by
    assert run.metadata == {"scorer": "llm_judge"}
    cost = CostLog.objects.get(run=run)
    assert cost.project == context.project
    assert cost.api_key == context.api_key
    assert cost.cost_known is True
    assert cost.total_cost is not None and cost.total_cost > Decimal(0)
    return run


# --- scoring --------------------------------------------------------------------------------------


def test_a_json_answer_is_scored_and_its_run_charged(judge, context: ScoreContext, openai_server: OpenAIServer) -> None:
    reply = '{"score": 4, "reason": "Right city, country missing."}'
    openai_server.enqueue(answer(reply))

    result = _judged(context, scale=5)

    assert result.value == pytest.approx(0.8)
    assert result.reason == "Right city, country missing."
    run = _assert_charged_run(result.judge_run_id, context, output=reply)
    assert run.prompt_version.prompt == judge
    assert run.variables == {"output": "Paris", "expected_output": "Paris, France"}  # what it declares, only
    [request] = openai_server.chat_requests()
    assert request.body["messages"][-1]["content"] == ("Grade the answer Paris against Paris, France. Reply as JSON.")


def test_a_score_line_answer_is_scored(judge, context: ScoreContext, openai_server: OpenAIServer) -> None:
    reply = "Score: 3\nReason: Partly right.\nThe capital is named."
    openai_server.enqueue(answer(reply))

    result = _judged(context, scale=4)

    assert result.value == pytest.approx(0.75)
    assert result.reason == "Partly right.\nThe capital is named."
    _assert_charged_run(result.judge_run_id, context, output=reply)


def test_the_default_scale_is_1(judge, context: ScoreContext, openai_server: OpenAIServer) -> None:
    openai_server.enqueue(answer('Here you go:\n```json\n{"score": 0.25, "reason": "Weak."}\n```\nThanks.'))
    result = _judged(context)
    assert result.value == pytest.approx(0.25)
    assert result.reason == "Weak."


def test_an_answer_out_of_format_fails_the_score_and_keeps_the_run(
    judge, context: ScoreContext, openai_server: OpenAIServer
) -> None:
    reply = "I think the answer is quite good, well done!" + " More words." * 50
    openai_server.enqueue(answer(reply))

    with pytest.raises(ScoringFailed) as info:
        _judged(context, scale=5)

    message = str(info.value)
    assert message.startswith("The judge answered out of format: ")
    assert "'I think the answer is quite good, well done! More words." in message
    assert message.endswith("...'")
    assert len(message) < 400  # a prefix of the answer, not all of it
    # The call was made and charged all the same; the score can point at it.
    _assert_charged_run(info.value.judge_run_id, context, output=reply)


@pytest.mark.parametrize("reply", ['{"score": 7, "reason": "Great."}', "Score: -1", '{"score": 5.5}'])
def test_a_score_out_of_range_fails_the_score(
    judge, context: ScoreContext, openai_server: OpenAIServer, reply: str
) -> None:
    openai_server.enqueue(answer(reply))

    with pytest.raises(ScoringFailed) as info:
        _judged(context, scale=5)

    assert str(info.value).startswith("The judge answered out of format: score ")
    assert "is outside [0, 5]" in str(info.value)
    assert Run.objects.get(pk=info.value.judge_run_id).status == Run.Status.SUCCEEDED


def test_the_judge_sees_the_reference_and_the_input_as_json(
    alice, provider_factory: ProviderFactory, context: ScoreContext, openai_server: OpenAIServer
) -> None:
    provider_factory()
    prompt_with_version(
        alice,
        name="judge",
        template="Ref: {{ reference }} | Input: {{ input }}",
        variables={"reference": {"type": "string"}, "input": {"type": "string"}},
        model="testllm/test-model",
    )
    openai_server.enqueue(answer('{"score": 1}'))

    result = score(
        "llm_judge",
        "out",
        "exp",
        reference="Be strict.",
        variables={"question": "Capital?", "n": 2},
        options={"prompt": "judge"},
        context=context,
    )

    assert result.value == 1.0
    assert result.reason == "Judged 1 of 1."
    [request] = openai_server.chat_requests()
    content = request.body["messages"][-1]["content"]
    assert content == f"Ref: Be strict. | Input: {json.dumps({'n': 2, 'question': 'Capital?'})}"


def test_version_and_model_options(
    judge, alice, provider_factory: ProviderFactory, context: ScoreContext, openai_server: OpenAIServer
) -> None:
    prompt_services.prompt_version_create(
        prompt=judge,
        created_by=alice,
        template="Version 2 judges {{ output }}.",
        variables={"output": {"type": "string"}},
    )
    provider_factory(name="other")
    openai_server.set_models(["test-model", "judge-model"])

    openai_server.enqueue(answer('{"score": 1}'), answer('{"score": 0}'))
    latest = _judged(context)
    first = _judged(context, version=1, model="other/judge-model")

    assert latest.value == 1.0 and first.value == 0.0
    latest_request, first_request = openai_server.chat_requests()
    assert latest_request.body["messages"][-1]["content"] == "Version 2 judges Paris."
    assert first_request.body["messages"][-1]["content"].startswith("Grade the answer Paris")
    assert first_request.body["model"] == "judge-model"
    run = Run.objects.get(pk=first.judge_run_id)
    assert (run.provider, run.model, run.prompt_version.number) == ("other", "judge-model", 1)


def test_a_missing_prompt_fails_the_score(alice, context: ScoreContext, openai_server: OpenAIServer) -> None:
    with pytest.raises(ScoringFailed, match=r"The judge prompt 'judge' cannot be used: No such prompt\."):
        _judged(context)
    assert not Run.objects.exists()


def test_a_missing_label_fails_the_score(judge, context: ScoreContext) -> None:
    with pytest.raises(ScoringFailed, match=r"The judge prompt 'judge' cannot be used"):
        _judged(context, label="staging")
    assert not Run.objects.exists()


def test_a_provider_failure_fails_the_score_with_the_failed_run(
    judge, context: ScoreContext, openai_server: OpenAIServer
) -> None:
    openai_server.set_default(error(400, '{"error": {"message": "Context too long."}}'))

    with pytest.raises(ScoringFailed) as info:
        _judged(context)

    assert str(info.value) == (
        "The judge's run failed (bad_request): Provider 'testllm' answered HTTP 400: Context too long."
    )
    run = Run.objects.get(pk=info.value.judge_run_id)
    assert run.status == Run.Status.FAILED
    assert not CostLog.objects.filter(run=run).exists()


# --- options --------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("options", "fields"),
    [
        ({}, ["scorers.0.options.prompt"]),
        ({"prompt": ""}, ["scorers.0.options.prompt"]),
        ({"prompt": "j", "label": "a", "version": 1}, ["scorers.0.options.label", "scorers.0.options.version"]),
        ({"prompt": "j", "version": 0}, ["scorers.0.options.version"]),
        ({"prompt": "j", "version": True}, ["scorers.0.options.version"]),
        ({"prompt": "j", "scale": 0}, ["scorers.0.options.scale"]),
        ({"prompt": "j", "scale": "5"}, ["scorers.0.options.scale"]),
        ({"prompt": "j", "model": "gpt4"}, ["scorers.0.options.model"]),
        ({"prompt": "j", "temperature": 0}, ["scorers.0.options.temperature"]),
    ],
)
def test_options_are_checked_for_shape(options: dict, fields: list[str]) -> None:
    assert sorted(options_errors("llm_judge", options)) == fields


def test_options_do_not_need_the_prompt_yet(db) -> None:
    score_spec = {"prompt": "not-made-yet", "label": "production", "scale": 10, "model": "later/model"}
    [spec] = scorer_specs_check([{"name": "llm_judge", "options": score_spec}])
    assert spec["options"] == {**score_spec, "scale": 10.0}


# --- parsing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ('{"score": 4, "reason": "ok"}', (4.0, "ok")),
        ('Sure. {"reason": "fine", "score": "2.5"} Hope that helps {', (2.5, "fine")),
        ('```json\n{"score": 1}\n```', (1.0, "")),
        ('{"note": {"x": 1}} then {"score": 3, "reason": " spaced "}', (3.0, "spaced")),
        ("**Score:** 4/5\n**Reason:** Good.", (4.0, "Good.")),
        ("score = 2", (2.0, "")),
    ],
)
def test_judge_answer_parse(text: str, parsed: tuple[float, str]) -> None:
    assert judge_answer_parse(text) == parsed


@pytest.mark.parametrize("text", ["", "Four out of five.", '{"score": "high"}', '{"score": true}', '{"grade": 4}'])
def test_judge_answer_parse_refuses(text: str) -> None:
    with pytest.raises(JudgeAnswerInvalid):
        judge_answer_parse(text)
