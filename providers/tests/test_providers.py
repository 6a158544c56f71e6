"""The provider layer over real HTTP against the scriptable OpenAI-compatible test server."""

import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from providers import clients as providers
from providers.clients import Completion, ProviderError, check_model, complete
from providers.models import Provider
from providers.tests.fixtures import ProviderFactory
from providers.tests.openai_server import (
    OpenAIServer,
    answer,
    error,
    malformed,
    model_not_found,
    no_choices,
    rate_limited,
    server_error,
    slow,
)

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hi"},
]
SECRET = "sk-test-very-secret-123"


def _fail(provider: Provider, model_id: str = "test-model") -> ProviderError:
    with pytest.raises(ProviderError) as info:
        complete(provider=provider, model_id=model_id, messages=MESSAGES, params={})
    return info.value


# --- success --------------------------------------------------------------------------------------


def test_success_with_usage(openai_server: OpenAIServer, provider_factory: ProviderFactory) -> None:
    provider = provider_factory()
    openai_server.enqueue(answer("Hi there, friend", model="test-model-2024"))

    result = complete(
        provider=provider,
        model_id="test-model",
        messages=MESSAGES,
        params={"max_tokens": 16, "temperature": 0.2, "stop": "\n", "seed": 7},
    )

    assert isinstance(result, Completion)
    assert result.text == "Hi there, friend"
    assert result.finish_reason == "stop"
    assert result.prompt_tokens == 5  # the server counts the words of the messages
    assert result.completion_tokens == 3
    assert result.model == "test-model-2024"
    assert result.latency_ms >= 0
    [request] = openai_server.chat_requests()
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == "test-model"
    assert request.body["messages"] == MESSAGES
    assert request.body["max_tokens"] == 16
    assert request.body["temperature"] == 0.2
    assert request.body["stop"] == ["\n"]
    assert request.body["seed"] == 7
    # Only the params given are sent.
    assert "top_p" not in request.body
    assert "presence_penalty" not in request.body


def test_success_without_usage_has_no_token_counts(
    openai_server: OpenAIServer, provider_factory: ProviderFactory
) -> None:
    provider = provider_factory()
    openai_server.enqueue(answer("No usage here", usage=False))

    result = complete(provider=provider, model_id="test-model", messages=MESSAGES, params={})

    assert result.text == "No usage here"
    assert result.prompt_tokens is None
    assert result.completion_tokens is None
    assert result.model == "test-model"  # the server echoed the requested model


def test_latency_is_measured(openai_server: OpenAIServer, provider_factory: ProviderFactory) -> None:
    provider = provider_factory()
    openai_server.enqueue(slow(0.3))

    result = complete(provider=provider, model_id="test-model", messages=MESSAGES, params={})

    assert result.text == "Late answer."
    assert 300 <= result.latency_ms < 5000


# --- failures -------------------------------------------------------------------------------------


def test_429_is_retryable_with_retry_after_seconds(
    openai_server: OpenAIServer, provider_factory: ProviderFactory
) -> None:
    openai_server.enqueue(rate_limited("7"))

    err = _fail(provider_factory())

    assert err.code == "rate_limited"
    assert err.retryable is True
    assert err.retry_after == 7.0
    assert err.status == 429
    assert "Rate limit reached" in err.message
    assert len(openai_server.chat_requests()) == 1  # no hidden retry in the client


def test_429_with_http_date_retry_after(openai_server: OpenAIServer, provider_factory: ProviderFactory) -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    openai_server.enqueue(rate_limited(format_datetime(when, usegmt=True)))

    err = _fail(provider_factory())

    assert err.code == "rate_limited"
    assert err.retry_after is not None
    assert 100 <= err.retry_after <= 121


def test_429_without_retry_after(openai_server: OpenAIServer, provider_factory: ProviderFactory) -> None:
    openai_server.enqueue(rate_limited(None))

    err = _fail(provider_factory())

    assert (err.code, err.retryable, err.retry_after) == ("rate_limited", True, None)


def test_500_is_retryable_server_error(openai_server: OpenAIServer, provider_factory: ProviderFactory) -> None:
    openai_server.enqueue(server_error(500, "Boom in the GPU."))

    err = _fail(provider_factory())

    assert (err.code, err.retryable, err.status) == ("server_error", True, 500)
    assert "Boom in the GPU." in err.message


def test_timeout(openai_server: OpenAIServer, provider_factory: ProviderFactory) -> None:
    provider = provider_factory(timeout=0.3)
    openai_server.enqueue(slow(3))

    err = _fail(provider)

    assert (err.code, err.retryable, err.status) == ("timeout", True, None)


def test_connection_refused(provider_factory: ProviderFactory, closed_port: int) -> None:
    provider = provider_factory(base_url=f"http://127.0.0.1:{closed_port}/v1")

    err = _fail(provider)

    assert (err.code, err.retryable) == ("connection_error", True)


def test_malformed_json(openai_server: OpenAIServer, provider_factory: ProviderFactory) -> None:
    openai_server.enqueue(malformed())

    err = _fail(provider_factory())

    assert (err.code, err.retryable) == ("malformed_response", False)


def test_no_choices_is_malformed(openai_server: OpenAIServer, provider_factory: ProviderFactory) -> None:
    openai_server.enqueue(no_choices())

    err = _fail(provider_factory())

    assert (err.code, err.retryable) == ("malformed_response", False)


def test_404_model_not_found(openai_server: OpenAIServer, provider_factory: ProviderFactory) -> None:
    openai_server.enqueue(model_not_found("nope"))

    err = _fail(provider_factory(), model_id="nope")

    assert (err.code, err.retryable, err.status) == ("model_not_found", False, 404)
    assert "nope" in err.message


def test_400_saying_the_model_does_not_exist_is_model_not_found(
    openai_server: OpenAIServer, provider_factory: ProviderFactory
) -> None:
    openai_server.enqueue(error(400, '{"error": {"message": "model \\"nope\\" not found, try pulling it first"}}'))

    err = _fail(provider_factory(), model_id="nope")

    assert (err.code, err.retryable, err.status) == ("model_not_found", False, 400)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures(openai_server: OpenAIServer, provider_factory: ProviderFactory, status: int) -> None:
    openai_server.enqueue(error(status, '{"error": {"message": "Invalid API key."}}'))

    err = _fail(provider_factory())

    assert (err.code, err.retryable, err.status) == ("auth_failed", False, status)


def test_other_4xx_is_bad_request(openai_server: OpenAIServer, provider_factory: ProviderFactory) -> None:
    openai_server.enqueue(error(400, '{"error": {"message": "max_tokens is too large"}}'))

    err = _fail(provider_factory())

    assert (err.code, err.retryable, err.status) == ("bad_request", False, 400)
    assert "max_tokens is too large" in err.message


def test_disabled_provider_fails_before_any_http(
    openai_server: OpenAIServer, provider_factory: ProviderFactory
) -> None:
    provider = provider_factory(enabled=False)

    err = _fail(provider)

    assert (err.code, err.retryable) == ("provider_disabled", False)
    with pytest.raises(ProviderError) as info:
        check_model(provider=provider, model_id="test-model")
    assert info.value.code == "provider_disabled"
    assert openai_server.requests == []


# --- credentials ----------------------------------------------------------------------------------


def test_authorization_header_is_the_env_var_value(
    openai_server: OpenAIServer, provider_factory: ProviderFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESTLLM_API_KEY", SECRET)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    provider = provider_factory(api_key_env="TESTLLM_API_KEY")

    complete(provider=provider, model_id="test-model", messages=MESSAGES, params={})
    check_model(provider=provider, model_id="test-model")

    assert [r.headers["authorization"] for r in openai_server.requests] == [f"Bearer {SECRET}"] * 2


def test_no_key_never_sends_the_hugging_face_token(
    openai_server: OpenAIServer, provider_factory: ProviderFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.delenv("UNSET_API_KEY", raising=False)
    for provider in (provider_factory(name="nokey"), provider_factory(name="unsetkey", api_key_env="UNSET_API_KEY")):
        complete(provider=provider, model_id="test-model", messages=MESSAGES, params={})
        check_model(provider=provider, model_id="test-model")

    assert len(openai_server.requests) == 4
    for request in openai_server.requests:
        assert "hf_secret" not in str(request.headers)
        assert request.headers.get("authorization") == f"Bearer {providers.NO_API_KEY}"


@pytest.mark.parametrize(
    "behaviour",
    [server_error(500, f"upstream said Bearer {SECRET}"), rate_limited("1"), model_not_found(), malformed()],
    ids=["500-echoing-the-key", "429", "404", "malformed"],
)
def test_secrets_absent_from_errors_and_logs(
    openai_server: OpenAIServer,
    provider_factory: ProviderFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    behaviour: object,
) -> None:
    monkeypatch.setenv("TESTLLM_API_KEY", SECRET)
    provider = provider_factory(api_key_env="TESTLLM_API_KEY")
    openai_server.enqueue(behaviour)  # type: ignore[arg-type]
    caplog.set_level(logging.DEBUG)

    err = _fail(provider)

    assert openai_server.chat_requests()[0].headers["authorization"] == f"Bearer {SECRET}"  # it was sent...
    assert SECRET not in str(err)  # ...but is never told
    assert SECRET not in repr(err)
    assert SECRET not in err.message
    assert SECRET not in caplog.text
    assert "provider call failed" in caplog.text  # the failure itself is logged


def test_hf_inference_client_uses_its_own_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_API_KEY", "hf_from_env")
    provider = Provider(name="hf", kind=Provider.Kind.HF_INFERENCE, api_key_env="HF_API_KEY", timeout=9)

    client = providers.client_for(provider)

    assert client.provider == "hf-inference"
    assert client.token == "hf_from_env"
    assert client.timeout == 9


def test_hf_inference_with_unset_key_variable_is_auth_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_API_KEY", raising=False)
    provider = Provider(name="hf", kind=Provider.Kind.HF_INFERENCE, api_key_env="HF_API_KEY")

    with pytest.raises(ProviderError) as info:
        providers.client_for(provider)

    assert (info.value.code, info.value.retryable) == ("auth_failed", False)


# --- check_model ----------------------------------------------------------------------------------


def test_check_model_accepts_a_listed_model_and_caches_the_list(
    openai_server: OpenAIServer, provider_factory: ProviderFactory
) -> None:
    openai_server.set_models(["test-model", "other"])
    provider = provider_factory()

    check_model(provider=provider, model_id="test-model")
    check_model(provider=provider, model_id="other")

    assert [r.path for r in openai_server.requests] == ["/v1/models"]  # the second check used the cache


def test_check_model_refuses_an_unlisted_model(openai_server: OpenAIServer, provider_factory: ProviderFactory) -> None:
    openai_server.set_models(["test-model"])

    with pytest.raises(ProviderError) as info:
        check_model(provider=provider_factory(), model_id="gpt-99")

    assert (info.value.code, info.value.retryable) == ("model_not_found", False)
    assert "gpt-99" in info.value.message
    assert "test-model" in info.value.message


def test_check_model_is_best_effort_without_a_listing(
    openai_server: OpenAIServer, provider_factory: ProviderFactory
) -> None:
    openai_server.set_models(None)  # GET /v1/models answers 404

    check_model(provider=provider_factory(), model_id="anything")

    assert [r.path for r in openai_server.requests] == ["/v1/models"]


def test_check_model_is_best_effort_when_unreachable(provider_factory: ProviderFactory, closed_port: int) -> None:
    check_model(provider=provider_factory(base_url=f"http://127.0.0.1:{closed_port}/v1"), model_id="anything")


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://h:1/v1", "http://h:1/v1/models"),
        ("http://h:1/v1/", "http://h:1/v1/models"),
        ("http://h:1", "http://h:1/v1/models"),
        ("https://h/openai", "https://h/openai/v1/models"),
        ("http://h/v1/chat/completions", "http://h/v1/models"),
    ],
)
def test_models_url_matches_the_chat_endpoint(base_url: str, expected: str) -> None:
    assert providers.models_url(base_url) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("3", 3.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: retry now
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert providers.parse_retry_after(value) == expected
