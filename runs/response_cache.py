"""The response cache: a run whose params ask for it (`cache: {"ttl": seconds}`) is answered from an
earlier answer to the identical request instead of calling the provider.

Identical means the same project, the same models in the same order (the run's own, then its
`fallbacks`), the same rendered messages and the same parameters as sent to the provider
(providers.clients.CHAT_PARAMS; `cache` itself is not one). Only a request that asks for a
repeatable answer is cached at all: `temperature` 0, or a `seed`. Anything else (no `cache`, or a
temperature above 0 without a seed) is neither looked up nor stored, so sampling stays sampling.

The project is part of the key: two projects sending the same prompt never share an answer, so no
project can learn from a cache hit what another one asked.

An answer is stored when a cacheable run succeeds (runs.services.run_succeed), for its `ttl`; a run
that asks with a `ttl` takes an answer at most that many seconds old, whatever the `ttl` it was
stored with. The store is Django's default cache: Redis with REDIS_URL (shared by every web process
and worker), local memory on the embedded default. The cache is an optimisation and never fails a
run: an unreachable store is a miss, logged.
"""

import hashlib
import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from django.core.cache import cache

from providers.clients import CHAT_PARAMS

logger = logging.getLogger(__name__)

_KEY_PREFIX = "runs:response:"


@dataclass(frozen=True)
class CachedAnswer:
    """What a succeeded run answered, and which model answered it (a fallback, maybe)."""

    provider: str
    model: str
    output: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    tokens_estimated: bool
    stored_at: float  # time.time() when stored


def cache_ttl(params: dict[str, Any]) -> int | None:
    """The `ttl` of a cacheable run's params, or None: the run is neither looked up nor stored."""
    options = params.get("cache")
    if not isinstance(options, dict) or not isinstance(options.get("ttl"), int):
        return None
    if params.get("temperature") != 0 and params.get("seed") is None:
        return None  # a sampled answer is not the answer to the request: another call may differ
    return int(options["ttl"])


def request_key(
    *, project_id: uuid.UUID, models: list[str], messages: list[dict[str, Any]], params: dict[str, Any]
) -> str | None:
    """The cache key of a request, or None when it is not cacheable (see cache_ttl).

    `models`: `<provider>/<model id>` of the run's own model, then its fallbacks, as the request gave them."""
    if cache_ttl(params) is None:
        return None
    sent = {name: params[name] for name in CHAT_PARAMS if params.get(name) is not None}
    material = json.dumps(
        {"project": str(project_id), "models": models, "messages": messages, "params": sent},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return _KEY_PREFIX + hashlib.sha256(material.encode()).hexdigest()


def answer_get(*, key: str, max_age: int) -> CachedAnswer | None:
    """The answer stored under `key` if it is at most `max_age` seconds old; None otherwise."""
    try:
        entry = cache.get(key)
    except Exception:
        logger.warning("response cache unavailable; answered by the provider", exc_info=True)
        return None
    if not isinstance(entry, dict):
        return None
    try:
        answer = CachedAnswer(**entry)
    except TypeError:  # stored by another version of this module: a miss, overwritten on success
        return None
    if time.time() - answer.stored_at > max_age:
        return None
    return answer


def answer_put(*, key: str, answer: CachedAnswer, ttl: int) -> None:
    """Stores `answer` for `ttl` seconds. Never raises: a lost entry only costs a provider call."""
    try:
        cache.set(key, asdict(answer), timeout=ttl)
    except Exception:
        logger.warning("response cache unavailable; answer not stored", exc_info=True)
