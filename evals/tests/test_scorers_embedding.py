"""embedding_similarity over real HTTP: the provider layer's embed() against the local test server."""

import math

import pytest

from evals.scorers.base import ScoreContext, ScoreInput, ScoringFailed
from evals.scorers.registry import scorer_build, scorer_specs_check
from evals.tests.scorer_helpers import NO_CONTEXT, options_errors, score
from providers.tests.fixtures import ProviderFactory
from providers.tests.openai_server import OpenAIServer, error, server_error

SECRET = "sk-embeddings-secret-789"
MODEL = "testllm/embed-model"


@pytest.fixture
def context(alice) -> ScoreContext:
    return ScoreContext(project=alice.personal_project, created_by=alice, api_key=None)


def test_identical_texts_score_1(
    openai_server: OpenAIServer, provider_factory: ProviderFactory, context: ScoreContext
) -> None:
    provider_factory()

    result = score("embedding_similarity", "The cat sat.", "The cat sat.", options={"model": MODEL}, context=context)

    assert result.value == pytest.approx(1.0)
    [request] = openai_server.embedding_requests()
    assert request.body == {"model": "embed-model", "input": ["The cat sat.", "The cat sat."]}


def test_the_value_is_the_cosine_of_the_two_embeddings(
    openai_server: OpenAIServer, provider_factory: ProviderFactory, context: ScoreContext
) -> None:
    provider_factory()
    openai_server.set_embeddings({"output": [1.0, 0.0, 0.0], "expected": [1.0, 1.0, 0.0], "opposite": [-1.0, 0, 0]})

    result = score("embedding_similarity", "output", "expected", options={"model": MODEL}, context=context)
    assert result.value == pytest.approx(1 / math.sqrt(2))
    assert result.reason == "Cosine similarity 0.707."

    # Opposite meanings: a negative cosine, clipped to 0.
    opposite = score("embedding_similarity", "output", "opposite", options={"model": MODEL}, context=context)
    assert opposite.value == 0.0
    assert opposite.reason == "Cosine similarity -1.000."


def test_different_texts_score_below_1(provider_factory: ProviderFactory, context: ScoreContext) -> None:
    provider_factory()
    result = score("embedding_similarity", "a dog", "quantum physics", options={"model": MODEL}, context=context)
    assert result.value < 0.99


def test_a_zero_vector_scores_0(
    openai_server: OpenAIServer, provider_factory: ProviderFactory, context: ScoreContext
) -> None:
    provider_factory()
    openai_server.set_embeddings({"": [0.0, 0.0], "something": [1.0, 0.0]})
    result = score("embedding_similarity", "", "something", options={"model": MODEL}, context=context)
    assert result.value == 0.0


def test_a_failed_embeddings_call_fails_the_score_without_the_secret(
    openai_server: OpenAIServer,
    provider_factory: ProviderFactory,
    context: ScoreContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EMBED_SCORER_KEY", SECRET)
    provider_factory(api_key_env="EMBED_SCORER_KEY")
    openai_server.enqueue(error(401, f'{{"error": {{"message": "key {SECRET} is not valid"}}}}'))

    with pytest.raises(ScoringFailed) as info:
        score("embedding_similarity", "a", "b", options={"model": MODEL}, context=context)

    message = str(info.value)
    assert message.startswith("The embeddings call failed (auth_failed): Provider 'testllm' answered HTTP 401")
    assert SECRET not in message

    openai_server.enqueue(server_error(503, "Overloaded."))
    with pytest.raises(ScoringFailed, match=r"failed \(server_error\).*HTTP 503: Overloaded\."):
        score("embedding_similarity", "a", "b", options={"model": MODEL}, context=context)


def test_no_expected_output_cannot_score(
    openai_server: OpenAIServer, provider_factory: ProviderFactory, context: ScoreContext
) -> None:
    provider_factory()
    with pytest.raises(ScoringFailed, match="no expected output"):
        score("embedding_similarity", "a", "", options={"model": MODEL}, context=context)
    assert openai_server.embedding_requests() == []


def test_a_provider_disabled_after_the_check_fails_the_score(
    openai_server: OpenAIServer, provider_factory: ProviderFactory
) -> None:
    provider = provider_factory()
    [spec] = scorer_specs_check([{"name": "embedding_similarity", "options": {"model": MODEL}}])
    built_before, _ = scorer_build(spec)
    provider.enabled = False
    provider.save()
    built_after, _ = scorer_build(spec)  # as an experiment builds its scorers when it scores

    item = ScoreInput(output="a", expected_output="b", reference="", variables={})
    with pytest.raises(ScoringFailed, match=r"The embedding model cannot be used: Provider 'testllm' is disabled\."):
        built_before.score(item, context=NO_CONTEXT)
    with pytest.raises(
        ScoringFailed, match=r"^The embedding_similarity scorer cannot be used any more: This provider is disabled\.$"
    ):
        built_after.score(item, context=NO_CONTEXT)
    assert openai_server.embedding_requests() == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, "Required: '<provider>/<model id>'."),
        ({"model": "no-slash"}, "Must be '<provider>/<model id>'"),
        ({"model": "nowhere/embed"}, "No provider named 'nowhere'"),
        ({"model": MODEL, "dimensions": 3}, "Unknown option."),
    ],
)
def test_options_are_checked_like_a_runs_model(options: dict, problem: str) -> None:
    errors = options_errors("embedding_similarity", options)
    [(field, [message])] = errors.items()
    assert field == ("scorers.0.options.dimensions" if "dimensions" in options else "scorers.0.options.model")
    assert message.startswith(problem)


def test_a_disabled_provider_is_refused_at_check_time(provider_factory: ProviderFactory) -> None:
    provider_factory(enabled=False)
    assert options_errors("embedding_similarity", {"model": MODEL}) == {
        "scorers.0.options.model": ["This provider is disabled."]
    }
