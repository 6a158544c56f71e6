"""Token counts: estimates for when a provider returns no usage, and the proven upper bound of a
prompt's tokens that a hard budget reserves before the run.

An estimate is stored with `Run.tokens_estimated = True`, so billing and the API can tell it from a
count the provider reported. The bound (`prompt_tokens_bound`) is never below what a provider can
count for the prompt, whatever the text: see its docstring.
"""

import atexit
import functools
import json
import logging
import math
from typing import Any

from providers.local_model import LOCAL_MODEL_ID, LOCAL_PROVIDER_NAME, gguf_path
from providers.models import Provider

logger = logging.getLogger(__name__)

# The usual rule of thumb for English text with BPE tokenizers (OpenAI's guidance: ~4 characters a token).
# Good for an estimate of usage, never for a bound: one-letter words, CJK or emoji take 1 token or more
# per character (a prompt of 200 one-letter words is ~105 by this rule and 203 tokens at a provider).
CHARS_PER_TOKEN = 4
# Tokens a chat template may add around each message (role markers, separators, begin/end tokens) and
# once around the whole conversation (the assistant's turn opener, a BOS token). Generous: ChatML adds
# 5 per message (`<|im_start|>`, role, newline, `<|im_end|>`, newline), OpenAI documents 3-4 plus 3.
MESSAGE_OVERHEAD_TOKENS = 8
CONVERSATION_OVERHEAD_TOKENS = 16


def prompt_tokens_bound(*, provider: Provider, model_id: str, messages: list[dict]) -> int:
    """An upper bound of the prompt tokens any provider counts for these messages: what a hard budget
    reserves.

    Byte-level BPE tokenizers (GPT, Llama 3, SmolLM2, Qwen, Mistral's Tekken) and SentencePiece with
    byte fallback (Llama 2, Mistral, Gemma) never emit more tokens than the text has UTF-8 bytes: every
    token stands for one byte at least. So the bound is the UTF-8 length of each message's role and
    content plus MESSAGE_OVERHEAD_TOKENS per message and CONVERSATION_OVERHEAD_TOKENS in all. For the
    local SmolLM2, whose tokenizer this process has, the exact count through its chat template is used
    instead (plus the conversation overhead, for the generation prompt the server adds).
    """
    if provider.name == LOCAL_PROVIDER_NAME and model_id == LOCAL_MODEL_ID:
        counted = _local_count(messages=messages, text=None)
        if counted is not None:
            return counted + CONVERSATION_OVERHEAD_TOKENS
    content_bytes = sum(
        len(str(m.get("role", "")).encode()) + len(_content(m.get("content")).encode()) for m in messages
    )
    return content_bytes + MESSAGE_OVERHEAD_TOKENS * len(messages) + CONVERSATION_OVERHEAD_TOKENS


def estimate_tokens(
    *, provider: Provider, model_id: str, messages: list[dict] | None = None, text: str | None = None
) -> int:
    """Estimated tokens of a prompt (`messages`) or of a completion (`text`); give exactly one.

    For the local SmolLM2 model, when llama_cpp is installed, this is the model's real tokenizer over
    the prompt as its chat template renders it. Otherwise it is the heuristic ceil(characters / 4),
    at least 1, where a message counts as "role: content". The caller marks the result as estimated.
    """
    if (messages is None) == (text is None):
        raise ValueError("Give exactly one of messages or text.")
    if provider.name == LOCAL_PROVIDER_NAME and model_id == LOCAL_MODEL_ID:
        counted = _local_count(messages=messages, text=text)
        if counted is not None:
            return counted
    return heuristic_tokens(_as_text(messages) if messages is not None else text or "")


def heuristic_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def _as_text(messages: list[dict]) -> str:
    return "\n".join(f"{m.get('role', '')}: {_content(m.get('content'))}" for m in messages)


def _content(content: Any) -> str:
    return content if isinstance(content, str) else json.dumps(content)


@functools.cache
def _local_tokenizer() -> Any:
    """SmolLM2's vocabulary only (no weights): loaded once per process; None when llama_cpp is missing."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    try:
        tokenizer = Llama(model_path=str(gguf_path()), vocab_only=True, verbose=False)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        logger.warning("local tokenizer unavailable, using the heuristic: %s", exc)
        return None
    # Free it while llama_cpp's module globals still exist; its __del__ at interpreter teardown fails noisily.
    atexit.register(tokenizer.close)
    return tokenizer


def _local_count(*, messages: list[dict] | None, text: str | None) -> int | None:
    tokenizer = _local_tokenizer()
    if tokenizer is None:
        return None
    if text is not None:
        return len(tokenizer.tokenize(text.encode(), add_bos=False, special=False))
    prompt = _render_chat(tokenizer, messages or [])
    # special=True: the template's <|im_start|> markers are single tokens, as the server counts them.
    return len(tokenizer.tokenize(prompt.encode(), add_bos=False, special=True))


def _render_chat(tokenizer: Any, messages: list[dict]) -> str:
    """The prompt the server builds from the model's own chat template (so counts match its usage)."""
    template = tokenizer.metadata.get("tokenizer.chat_template")
    if template:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        def special(token_id: int) -> str:
            return str(tokenizer.detokenize([token_id], special=True).decode(errors="ignore"))

        formatter = Jinja2ChatFormatter(
            template=template, eos_token=special(tokenizer.token_eos()), bos_token=special(tokenizer.token_bos())
        )
        # The formatter is typed for llama_cpp's TypedDicts; ours are the same shape as plain dicts.
        plain: Any = [{**m, "content": _content(m.get("content"))} for m in messages]
        try:
            return str(formatter(messages=plain).prompt)
        except Exception as exc:  # a template error must not fail a run; count plain text
            logger.info("chat template failed, counting plain text: %s", exc)
    return _as_text(messages)
