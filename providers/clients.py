"""The provider layer: the only module that talks HTTP to an LLM, always through `huggingface_hub`.

`complete()` sends chat messages and returns a `Completion`, `embed()` returns embedding vectors;
every failure becomes a `ProviderError` with a short machine code and a `retryable` flag, so
callers decide about retries without knowing HTTP. Secrets never leave this module: the API key is
read from the environment variable the `Provider` row names, and is scrubbed from every message we
build.
"""

import email.utils
import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse, urlunparse

import httpx2
from django.core.cache import cache
from huggingface_hub import ChatCompletionInputStreamOptions, HfApi, InferenceClient
from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from llmops import config_cache
from llmops.config_cache import ProcessCache
from providers.models import Provider

logger = logging.getLogger(__name__)

# Sent as the bearer token to openai-compatible hosts that need no key. An explicit value is what
# stops huggingface_hub from falling back to the machine's Hugging Face token (HF_TOKEN or the
# login cache) and sending it to a host that is not Hugging Face.
NO_API_KEY = "none"

# Parameters forwarded to chat_completion; prompts.services.validate_params checks their values.
CHAT_PARAMS = ("max_tokens", "temperature", "top_p", "stop", "seed", "frequency_penalty", "presence_penalty")

MODELS_CACHE_SECONDS = 60
# How long check_model waits for a model listing; it is only a pre-flight check.
MODELS_LIST_TIMEOUT = 10.0
_MAX_SERVER_MESSAGE = 300
_MODEL_MISSING = re.compile(r"model.*(not found|does not exist|doesn't exist)|unknown model|no such model", re.I)


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str
    prompt_tokens: int | None  # None when the provider returned no usage
    completion_tokens: int | None
    latency_ms: int
    model: str  # model id reported by the provider (or the requested one)


class ProviderError(Exception):
    """A failed call to a provider.

    code: short machine code ('rate_limited', 'server_error', 'timeout', 'connection_error', 'bad_request',
    'model_not_found', 'auth_failed', 'malformed_response', 'provider_disabled', 'unknown_provider');
    message: human text that never contains a secret; retryable: whether the same call may succeed later;
    retry_after: seconds the provider asked us to wait (Retry-After header), if any; status: HTTP status, if any.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status

    def __repr__(self) -> str:
        return f"ProviderError(code={self.code!r}, status={self.status}, retryable={self.retryable})"


# --- client ---------------------------------------------------------------------------------------


def _api_key(provider: Provider) -> str | None:
    """The key from the environment variable the provider names; None when unnamed, unset or empty."""
    if not provider.api_key_env:
        return None
    return os.environ.get(provider.api_key_env) or None


def client_for(provider: Provider) -> InferenceClient:
    """An InferenceClient for the provider, always with an explicit key for non-Hugging Face hosts."""
    key = _api_key(provider)
    if provider.kind == Provider.Kind.OPENAI_COMPATIBLE:
        if not provider.base_url:
            raise ProviderError("bad_request", f"Provider '{provider.name}' has no base URL.", retryable=False)
        return InferenceClient(base_url=provider.base_url, api_key=key or NO_API_KEY, timeout=provider.timeout)
    if provider.kind == Provider.Kind.HF_INFERENCE:
        if provider.api_key_env and key is None:
            # A named but unset variable is a deployment mistake; falling back to another token would hide it.
            raise ProviderError(
                "auth_failed",
                f"Environment variable {provider.api_key_env} for provider '{provider.name}' is not set.",
                retryable=False,
            )
        # None lets huggingface_hub use the machine's Hugging Face login, which only goes to Hugging Face.
        return InferenceClient(provider="hf-inference", api_key=key, timeout=provider.timeout)
    raise ProviderError(
        "unknown_provider", f"Provider '{provider.name}' has unknown kind {provider.kind!r}.", retryable=False
    )


def _ensure_enabled(provider: Provider) -> None:
    if not provider.enabled:
        raise ProviderError("provider_disabled", f"Provider '{provider.name}' is disabled.", retryable=False)


# --- completion -----------------------------------------------------------------------------------


def _chat_kwargs(params: dict) -> dict[str, Any]:
    kwargs: dict[str, Any] = {name: params[name] for name in CHAT_PARAMS if params.get(name) is not None}
    if isinstance(kwargs.get("stop"), str):
        kwargs["stop"] = [kwargs["stop"]]  # the client's signature takes a list
    return kwargs


def _failed(exc: Exception, *, provider: Provider, model_id: str) -> ProviderError:
    error = _classify(exc, provider=provider, model_id=model_id)
    logger.warning(
        "provider call failed: provider=%s model=%s code=%s status=%s: %s",
        provider.name,
        model_id,
        error.code,
        error.status,
        error.message,  # already scrubbed of the key
    )
    return error


def complete(*, provider: Provider, model_id: str, messages: list[dict], params: dict) -> Completion:
    """Runs one chat completion. Raises ProviderError for every failure, before or after the HTTP call."""
    _ensure_enabled(provider)
    client = client_for(provider)
    kwargs = _chat_kwargs(params)

    started = time.perf_counter()
    try:
        output = client.chat_completion(messages, model=model_id, **kwargs)
    except Exception as exc:
        # `from None`: the original exception may quote a server body that echoes what we sent.
        raise _failed(exc, provider=provider, model_id=model_id) from None
    finally:
        client.close()
    latency_ms = round((time.perf_counter() - started) * 1000)

    choices = getattr(output, "choices", None)
    if not choices:
        raise ProviderError(
            "malformed_response", f"Provider '{provider.name}' returned no choices.", retryable=False, status=200
        )
    choice = choices[0]
    message = getattr(choice, "message", None)
    text = getattr(message, "content", None)
    if text is not None and not isinstance(text, str):
        raise ProviderError(
            "malformed_response", f"Provider '{provider.name}' returned non-text content.", retryable=False, status=200
        )
    usage = getattr(output, "usage", None)
    return Completion(
        text=text or "",
        finish_reason=str(getattr(choice, "finish_reason", None) or ""),
        prompt_tokens=_token_count(getattr(usage, "prompt_tokens", None)),
        completion_tokens=_token_count(getattr(usage, "completion_tokens", None)),
        latency_ms=latency_ms,
        model=str(getattr(output, "model", None) or model_id),
    )


@dataclass(frozen=True)
class StreamChunk:
    """One piece of a streamed completion: new text, and on the last pieces the finish reason and
    the usage the provider counted (None where it sent none)."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def open_stream(*, provider: Provider, model_id: str, messages: list[dict], params: dict) -> Iterator[StreamChunk]:
    """Starts a streamed chat completion and returns its chunks as they arrive.

    The call is made here, so a provider that refuses (a 429, a 5xx, a bad model) raises ProviderError
    before anything is streamed, when a retry or another model can still answer; a failure after that
    raises ProviderError from the iterator. Closing the iterator early closes the connection."""
    _ensure_enabled(provider)
    client = client_for(provider)
    try:
        events = client.chat_completion(
            messages,
            model=model_id,
            stream=True,
            stream_options=ChatCompletionInputStreamOptions(include_usage=True),
            **_chat_kwargs(params),
        )
    except Exception as exc:
        client.close()
        raise _failed(exc, provider=provider, model_id=model_id) from None
    return _chunks(events, client=client, provider=provider, model_id=model_id)


def _chunks(
    events: Iterable[Any], *, client: InferenceClient, provider: Provider, model_id: str
) -> Iterator[StreamChunk]:
    try:
        for event in events:
            usage = getattr(event, "usage", None)
            choices = getattr(event, "choices", None) or []
            choice = choices[0] if choices else None
            delta = getattr(choice, "delta", None)
            text = getattr(delta, "content", None)
            yield StreamChunk(
                text=text if isinstance(text, str) else "",
                finish_reason=str(getattr(choice, "finish_reason", None) or "") or None,
                prompt_tokens=_token_count(getattr(usage, "prompt_tokens", None)),
                completion_tokens=_token_count(getattr(usage, "completion_tokens", None)),
            )
    except ProviderError:
        raise
    except Exception as exc:
        raise _failed(exc, provider=provider, model_id=model_id) from None
    finally:
        client.close()


def _token_count(value: Any) -> int | None:
    # Some servers send usage with nulls or floats; only a non-negative integer is a count.
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return int(value)


# --- embeddings -----------------------------------------------------------------------------------


def embeddings_url(base_url: str) -> str:
    """OpenAI's embeddings endpoint next to the chat endpoint of the same base URL."""
    return models_url(base_url).removesuffix("/models") + "/embeddings"


def embed(*, provider: Provider, model_id: str, texts: list[str]) -> list[list[float]]:
    """The embedding of each text, in order. Raises ProviderError for every failure.

    Hugging Face (hf-inference) is asked through InferenceClient.feature_extraction. An
    openai-compatible server is sent OpenAI's `POST {base_url}/embeddings` ({"model", "input"}) with
    huggingface_hub's session and headers: feature_extraction, given a base URL, posts the TEI body
    ({"inputs": [...]}, no model) to the base URL itself, which llama.cpp, vLLM and OpenAI do not serve.
    """
    _ensure_enabled(provider)
    if not texts:
        return []
    try:
        if provider.kind == Provider.Kind.OPENAI_COMPATIBLE:
            data = _openai_embeddings(provider=provider, model_id=model_id, texts=texts)
        else:
            client = client_for(provider)
            try:
                data = client.feature_extraction(texts, model=model_id).tolist()
            finally:
                client.close()
    except Exception as exc:
        raise _failed(exc, provider=provider, model_id=model_id) from None
    return _vectors(data, count=len(texts), provider=provider)


def _openai_embeddings(*, provider: Provider, model_id: str, texts: list[str]) -> Any:
    if not provider.base_url:
        raise ProviderError("bad_request", f"Provider '{provider.name}' has no base URL.", retryable=False)
    headers = build_hf_headers(token=_api_key(provider) or NO_API_KEY)
    response = get_session().post(
        embeddings_url(provider.base_url),
        json={"model": model_id, "input": texts},
        headers=headers,
        timeout=provider.timeout,
    )
    hf_raise_for_status(response)  # an HfHubHTTPError with the response, classified like a chat call's
    try:
        body = response.json()
        items = sorted(body["data"], key=lambda item: item["index"])
        return [item["embedding"] for item in items]
    except (ValueError, KeyError, TypeError):
        raise ProviderError(
            "malformed_response",
            f"Provider '{provider.name}' returned a body that is not an embedding list.",
            retryable=False,
            status=response.status_code,
        ) from None


def _vectors(data: Any, *, count: int, provider: Provider) -> list[list[float]]:
    """`count` vectors of finite numbers, all of one length, or a malformed_response ProviderError."""
    vectors: list[list[float]] = []
    if isinstance(data, list) and len(data) == count:
        for vector in data:
            if not isinstance(vector, list) or not vector:
                break
            if not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in vector):
                break
            vectors.append([float(x) for x in vector])
    if len(vectors) != count or len({len(vector) for vector in vectors}) != 1:
        raise ProviderError(
            "malformed_response",
            f"Provider '{provider.name}' did not return one embedding vector per text.",
            retryable=False,
            status=200,
        )
    return vectors


# --- error classification -------------------------------------------------------------------------


def _classify(exc: Exception, *, provider: Provider, model_id: str) -> ProviderError:
    """Maps a huggingface_hub / httpx2 exception to a ProviderError whose message holds no secret."""
    name = provider.name
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, HfHubHTTPError):
        return _from_response(exc.response, provider=provider, model_id=model_id)
    if isinstance(exc, InferenceTimeoutError | httpx2.TimeoutException | TimeoutError):
        return ProviderError(
            "timeout", f"Provider '{name}' did not answer within {provider.timeout:g} s.", retryable=True
        )
    if isinstance(exc, httpx2.TransportError | ConnectionError):
        return ProviderError(
            "connection_error",
            f"Could not reach provider '{name}' ({type(exc).__name__}).",
            retryable=True,
        )
    if isinstance(exc, ValueError) and (
        isinstance(exc, json.JSONDecodeError | UnicodeDecodeError) or str(exc).startswith("Invalid data type")
    ):
        return ProviderError(
            "malformed_response", f"Provider '{name}' returned a body that is not a chat completion.", retryable=False
        )
    # Anything else was refused by the client before sending (e.g. a model id it cannot route).
    return ProviderError(
        "bad_request",
        _redact(f"Provider '{name}' request failed: {type(exc).__name__}: {exc}", provider),
        retryable=False,
    )


def _from_response(response: httpx2.Response, *, provider: Provider, model_id: str) -> ProviderError:
    status = response.status_code
    detail = _server_message(response, provider)
    suffix = f": {detail}" if detail else ""
    prefix = f"Provider '{provider.name}' answered HTTP {status}"
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return ProviderError(
            "rate_limited", f"{prefix} (rate limited){suffix}", retryable=True, retry_after=retry_after, status=status
        )
    if status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"))  # 503 may carry one too
        return ProviderError(
            "server_error", f"{prefix}{suffix}", retryable=True, retry_after=retry_after, status=status
        )
    if status == 404 or (status in (400, 422) and _MODEL_MISSING.search(detail)):
        return ProviderError(
            "model_not_found",
            f"{prefix}: model '{model_id}' not found{f' ({detail})' if detail else ''}",
            retryable=False,
            status=status,
        )
    if status in (401, 403):
        return ProviderError("auth_failed", f"{prefix} (authentication failed){suffix}", retryable=False, status=status)
    return ProviderError("bad_request", f"{prefix}{suffix}", retryable=False, status=status)


def _server_message(response: httpx2.Response, provider: Provider) -> str:
    """The server's own error text, shortened and scrubbed; '' when it cannot be read."""
    try:
        response.read()
        body = response.text
    except Exception:  # a closed stream just means no detail
        return ""
    text = body
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            error = error.get("message")
        candidate = error or data.get("message") or data.get("detail")
        if isinstance(candidate, str):
            text = candidate
    text = " ".join(text.split())[:_MAX_SERVER_MESSAGE]
    return _redact(text, provider)


def _redact(text: str, provider: Provider) -> str:
    # The server might echo the request (headers included); never let the key through.
    for secret in (_api_key(provider), os.environ.get("HF_TOKEN")):
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds ('120') or an HTTP-date; None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


# --- model check ----------------------------------------------------------------------------------


def models_url(base_url: str) -> str:
    """The model listing next to the chat endpoint huggingface_hub derives from the same base URL."""
    parsed = urlparse(base_url)
    path = parsed.path.rstrip("/")
    if path.endswith("/chat/completions"):
        path = path.removesuffix("/chat/completions")
    elif not path.endswith("/v1"):
        path += "/v1"
    return urlunparse(parsed._replace(path=f"{path}/models"))


def fetch_model_ids(base_url: str, *, api_key: str | None, timeout: float) -> list[str]:
    """GET {base_url}/models on an openai-compatible server. Raises ProviderError on any failure."""
    headers = build_hf_headers(token=api_key or NO_API_KEY)
    try:
        response = get_session().get(models_url(base_url), headers=headers, timeout=timeout)
    except httpx2.TimeoutException:
        raise ProviderError("timeout", "Model listing timed out.", retryable=True) from None
    except httpx2.TransportError as exc:
        raise ProviderError(
            "connection_error", f"Model listing failed ({type(exc).__name__}).", retryable=True
        ) from None
    if response.status_code != 200:
        raise ProviderError(
            "bad_request",
            f"Model listing answered HTTP {response.status_code}.",
            retryable=False,
            status=response.status_code,
        )
    try:
        data = response.json()
        return [str(item["id"]) for item in data["data"]]
    except (ValueError, KeyError, TypeError):
        raise ProviderError(
            "malformed_response", "Model listing is not an OpenAI model list.", retryable=False
        ) from None


# Each run's model is checked against its provider's listing: this process also keeps the listings it
# read from the shared cache (for at most CONFIG_CACHE_SECONDS more than the shared cache does).
model_listings: ProcessCache[tuple[str, ...]] = ProcessCache("model listings", max_entries=1_000)


def cached_model_ids(provider: Provider, *, timeout: float = MODELS_LIST_TIMEOUT) -> list[str] | None:
    """The provider's model ids, cached per provider for a minute; None when the listing failed
    (asked for at most `timeout` seconds, and never longer than the provider's own timeout)."""
    # Base URL and key variable are part of the key, so reconfiguring a provider is seen at once.
    fingerprint = hashlib.sha256(f"{provider.pk}|{provider.base_url}|{provider.api_key_env}".encode()).hexdigest()
    cache_key = f"runs:provider-models:{fingerprint}"
    token = config_cache.generation()
    ids = model_listings.get(cache_key, token)
    if isinstance(ids, tuple):
        return list(ids)
    ids = cache.get(cache_key)
    if ids is not None:
        model_listings.put(cache_key, token, tuple(ids))
        return list(ids)
    try:
        ids = fetch_model_ids(provider.base_url, api_key=_api_key(provider), timeout=min(provider.timeout, timeout))
    except ProviderError as error:
        logger.info("model listing failed: provider=%s code=%s status=%s", provider.name, error.code, error.status)
        return None
    cache.set(cache_key, ids, MODELS_CACHE_SECONDS)
    return ids


def check_model(*, provider: Provider, model_id: str) -> None:
    """Raises ProviderError when the provider is disabled or says the model does not exist.

    Best effort: if the provider cannot be asked (network error, no /models endpoint), this returns
    quietly and the run reports the real error later.
    """
    _ensure_enabled(provider)
    if provider.kind == Provider.Kind.OPENAI_COMPATIBLE:
        ids = cached_model_ids(provider)
        if ids is not None and model_id not in ids:
            shown = ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "")
            raise ProviderError(
                "model_not_found",
                f"Provider '{provider.name}' has no model '{model_id}' (available: {shown or 'none'}).",
                retryable=False,
            )
    elif provider.kind == Provider.Kind.HF_INFERENCE:
        _check_hub_model(provider=provider, model_id=model_id)


def _check_hub_model(*, provider: Provider, model_id: str) -> None:
    cache_key = "runs:hub-model:" + hashlib.sha256(model_id.encode()).hexdigest()
    if cache.get(cache_key):
        return
    try:
        HfApi(token=_api_key(provider)).model_info(model_id, timeout=min(provider.timeout, MODELS_LIST_TIMEOUT))
    except HfHubHTTPError as exc:
        if exc.response.status_code == 404:
            raise ProviderError(
                "model_not_found", f"Hugging Face has no model '{model_id}'.", retryable=False, status=404
            ) from None
        return
    except Exception:  # best effort: offline, rate limited, gated... the run will tell
        return
    cache.set(cache_key, True, MODELS_CACHE_SECONDS)


# --- configuration --------------------------------------------------------------------------------
