"""providers.clients.embed over real HTTP against the OpenAI-compatible test server."""

import pytest

from providers.clients import ProviderError, embed, embeddings_url
from providers.tests.fixtures import ProviderFactory
from providers.tests.openai_server import (
    OpenAIServer,
    error,
    malformed,
    model_not_found,
    rate_limited,
    server_error,
    text_vector,
)

SECRET = "sk-embed-very-secret-456"


def test_embeddings_url_sits_next_to_the_chat_endpoint() -> None:
    assert embeddings_url("http://host:8080/v1") == "http://host:8080/v1/embeddings"
    assert embeddings_url("http://host:8080/v1/") == "http://host:8080/v1/embeddings"
    assert embeddings_url("http://host:8080") == "http://host:8080/v1/embeddings"
    assert embeddings_url("http://host/v1/chat/completions") == "http://host/v1/embeddings"


def test_embed_returns_one_vector_per_text_in_order(
    openai_server: OpenAIServer, provider_factory: ProviderFactory
) -> None:
    provider = provider_factory()
    chosen = [0.5, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    openai_server.set_embeddings({"chosen": chosen})

    vectors = embed(provider=provider, model_id="embed-model", texts=["a cat", "chosen"])

    assert vectors == [text_vector("a cat"), chosen]
    [request] = openai_server.embedding_requests()
    assert request.method == "POST"
    assert request.path == "/v1/embeddings"
    assert request.body == {"model": "embed-model", "input": ["a cat", "chosen"]}
    # No key configured: the explicit placeholder, never a Hugging Face token.
    assert request.headers["authorization"] == "Bearer none"


def test_identical_texts_have_identical_vectors(openai_server: OpenAIServer, provider_factory: ProviderFactory) -> None:
    provider = provider_factory()

    first, second, other = embed(provider=provider, model_id="m", texts=["same", "same", "different"])

    assert first == second
    assert first != other
    assert len(first) == len(other) == 8


def test_no_texts_makes_no_call(openai_server: OpenAIServer, provider_factory: ProviderFactory) -> None:
    assert embed(provider=provider_factory(), model_id="m", texts=[]) == []
    assert openai_server.embedding_requests() == []


def test_the_key_is_sent_and_never_in_an_error(
    openai_server: OpenAIServer, provider_factory: ProviderFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMBED_TEST_KEY", SECRET)
    provider = provider_factory(api_key_env="EMBED_TEST_KEY")
    openai_server.enqueue(error(400, f'{{"error": {{"message": "bad key {SECRET} echoed"}}}}'))

    with pytest.raises(ProviderError) as info:
        embed(provider=provider, model_id="m", texts=["x"])

    assert info.value.code == "bad_request"
    assert info.value.status == 400
    assert SECRET not in info.value.message
    assert "[redacted]" in info.value.message
    [request] = openai_server.embedding_requests()
    assert request.headers["authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize(
    ("behaviour", "code", "retryable", "status"),
    [
        (server_error(503, "Overloaded."), "server_error", True, 503),
        (rate_limited("3"), "rate_limited", True, 429),
        (model_not_found("embed-model"), "model_not_found", False, 404),
    ],
)
def test_a_provider_error_is_a_provider_error(
    openai_server: OpenAIServer,
    provider_factory: ProviderFactory,
    behaviour: object,
    code: str,
    retryable: bool,
    status: int,
) -> None:
    provider = provider_factory()
    openai_server.enqueue(behaviour)  # type: ignore[arg-type]

    with pytest.raises(ProviderError) as info:
        embed(provider=provider, model_id="embed-model", texts=["x"])

    assert info.value.code == code
    assert info.value.retryable is retryable
    assert info.value.status == status


def test_a_body_that_is_not_an_embedding_list_is_malformed(
    openai_server: OpenAIServer, provider_factory: ProviderFactory
) -> None:
    provider = provider_factory()
    openai_server.enqueue(malformed())

    with pytest.raises(ProviderError) as info:
        embed(provider=provider, model_id="m", texts=["x"])

    assert info.value.code == "malformed_response"


def test_vectors_of_different_lengths_are_malformed(
    openai_server: OpenAIServer, provider_factory: ProviderFactory
) -> None:
    provider = provider_factory()
    openai_server.set_embeddings({"short": [1.0]})

    with pytest.raises(ProviderError) as info:
        embed(provider=provider, model_id="m", texts=["short", "long enough"])

    assert info.value.code == "malformed_response"


def test_unreachable_and_disabled_providers(provider_factory: ProviderFactory, closed_port: int) -> None:
    provider = provider_factory(base_url=f"http://127.0.0.1:{closed_port}/v1")
    with pytest.raises(ProviderError) as info:
        embed(provider=provider, model_id="m", texts=["x"])
    assert info.value.code == "connection_error"
    assert info.value.retryable is True

    disabled = provider_factory(name="off", enabled=False)
    with pytest.raises(ProviderError) as info:
        embed(provider=disabled, model_id="m", texts=["x"])
    assert info.value.code == "provider_disabled"
