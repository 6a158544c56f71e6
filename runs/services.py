"""Writes for runs: create (validate, render, enqueue), cancel, execute (the actor's work), finish, recover.

A run's life: `run_create` commits it `queued` (the run row is its own outbox: `enqueued_at` says
whether the broker took its message); `run_execute` claims it with a lease (runs.leases) that the
worker renews while the provider answers; `run_finish` ends it with every side effect, whatever
ends it; `runs_recover` sends what the broker never got and takes back what dead workers held.
"""

import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from dramatiq.middleware import TimeLimitExceeded

from accounts import ratelimit
from accounts.models import APIKey, Project, User
from billing import selectors as billing_selectors
from billing import services as billing_services
from llmops.errors import Conflict, ValidationFailed
from llmops.queue import send_or_log
from prompts import services as prompt_services
from prompts.models import PromptVersion
from providers import clients, tokens
from providers.checks import model_check, model_split, provider_by_name
from providers.models import Provider
from runs import checks, leases, notify, response_cache
from runs.events import run_event_emit
from runs.models import BatchItem, Run

logger = logging.getLogger(__name__)

# Rows per recovery step and pass: a backlog larger than this is worked off over several passes.
BATCH = 1000


def messages_for(rendered: dict[str, Any]) -> list[dict[str, str]]:
    """Chat messages exactly as sent: text prompts go as one user message."""
    if rendered["kind"] == "text":
        return [{"role": "user", "content": rendered["text"]}]
    return list(rendered["messages"])


def _request_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def split_key_hash(split_key: str | None) -> str:
    """What a run keeps of its caller's split key: an HMAC under SECRET_KEY, so that runs of one caller
    can be told apart and grouped, but the key (an id of a person, maybe) is not recoverable from it."""
    if split_key is None:
        return ""
    return hmac.new(settings.SECRET_KEY.encode(), f"split_key\0{split_key}".encode(), hashlib.sha256).hexdigest()


def run_create(
    *,
    project: Project,
    created_by: User | None,
    api_key: APIKey | None,
    prompt: str | None = None,
    prompt_version_id: uuid.UUID | None = None,
    version: int | None = None,
    label: str | None = None,
    variables: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    model: str | None = None,
    messages: list[dict[str, str]] | None = None,
    metadata: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    inline: bool = False,
    split_key: str | None = None,
) -> tuple[Run, bool]:
    """Validates everything, records a queued run and enqueues it after commit.

    `messages` (chat messages, already checked for shape) go after the prompt's rendered ones; with
    no prompt at all (neither `prompt` nor `prompt_version_id`) they are the whole input and `model`
    is required: a gateway call naming a model. `inline`: the run is recorded already running its
    first attempt, for the caller to execute in this request (runs.inline), and is not enqueued.

    Params `fallbacks` (the version's, or the request's) are checked each as the run's model is, and
    the budget holds the most expensive of the run's models. With params `cache`, a repeatable request
    answered within its `ttl` (runs.response_cache) is recorded already succeeded and `cached`: no
    budget hold, no cost entry, not enqueued nor executed (run_inline and run_stream return it as it is).

    A label with an A/B split runs the arm `split_key` hashes to (sticky per key; at random without
    one; runs.checks.run_version_check); the run records the label, that its split picked the version,
    and an HMAC of the key (never the key itself).

    Returns (run, created). Nothing is written when validation fails. With an idempotency key, the
    same key and body return the earlier run (created=False); the same key with another body is 409.
    """
    variables = variables or {}
    overrides = prompt_services.validate_params(params or {})
    hashed: dict[str, Any] = {
        "prompt": prompt,
        "prompt_version_id": prompt_version_id,
        "version": version,
        "label": label,
        "variables": variables,
        "params": overrides,
        "model": model,
        "metadata": metadata or {},
    }
    if messages is not None:  # only then: the hashes of earlier runs' requests stay what they were
        hashed["messages"] = messages
    if split_key is not None:  # likewise
        hashed["split_key"] = split_key
    request_hash = _request_hash(hashed)
    if idempotency_key:
        existing = Run.objects.filter(project=project, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _idempotent_replay(existing, request_hash), False
    ratelimit.token_rate_check(api_key=api_key)

    prompt_version: PromptVersion | None = None
    run_label, split_arm = "", False
    if prompt is None and prompt_version_id is None:
        if not model or not messages:
            raise ValidationFailed(
                "A run without a prompt needs a model and messages.",
                fields={"model" if not model else "messages": ["Required when no prompt is given."]},
            )
        input_messages = list(messages)
        version_params: dict[str, Any] = {}
    else:
        picked = checks.run_version_check(
            project=project,
            prompt_ref=prompt,
            prompt_version_id=prompt_version_id,
            version=version,
            label=label,
            split_key=split_key,
        )
        prompt_version, run_label, split_arm = picked.version, picked.label, picked.split_arm
        rendered = prompt_services.prompt_render(version=prompt_version, values=variables)
        input_messages = messages_for(rendered) + list(messages or [])
        version_params = prompt_version.params
    default_model = prompt_version.model if prompt_version is not None else ""
    provider, model_id = model_check(model=model or default_model, field="model" if model else "prompt")
    run_params = {**version_params, **overrides}
    fallbacks = _fallbacks_check(run_params, from_request="fallbacks" in overrides)
    # Always send a completion cap: it is what bounds the cost a budget reserves for the run.
    run_params.setdefault("max_tokens", settings.BUDGET_DEFAULT_MAX_TOKENS)
    cached = _cached_answer(
        project=project,
        models=[f"{provider.name}/{model_id}", *run_params.get("fallbacks", [])],
        messages=input_messages,
        params=run_params,
    )
    now = timezone.now()
    running: dict[str, Any] = (
        {
            "status": Run.Status.RUNNING,
            "execution": Run.Execution.INLINE,
            "attempts": 1,
            "started_at": now,
            "lease_expires_at": leases.lease_until(now),
        }
        if inline
        else {}
    )
    fields: dict[str, Any] = {
        "project": project,
        "created_by": created_by,
        "api_key": api_key,
        "prompt_version": prompt_version,
        "label": run_label,
        "split_arm": split_arm,
        "split_key_hash": split_key_hash(split_key),
        "variables": variables,
        "rendered_input": input_messages,
        "provider": provider.name,
        "model": model_id,
        "params": run_params,
        "metadata": metadata or {},
        "idempotency_key": idempotency_key or None,
        "request_hash": request_hash,
    }

    try:
        with _run_create_transaction(project=project, api_key=api_key, cached=cached is not None):
            if cached is not None:
                run = _cached_run_create(fields=fields, answer=cached, inline=inline, now=now)
            else:
                run = Run.objects.create(**fields, **running)
                # Refused (402) rolls the run back: a refused request leaves nothing behind.
                held = billing_services.budget_reserve(
                    project=project,
                    api_key=api_key,
                    run_id=run.pk,
                    provider=provider.name,
                    model=model_id,
                    prompt_tokens_bound=tokens.prompt_tokens_bound(
                        provider=provider, model_id=model_id, messages=run.rendered_input
                    ),
                    max_completion_tokens=run_params["max_tokens"],
                    fallbacks=[
                        billing_services.ReserveCandidate(
                            provider=fallback.name,
                            model=fallback_id,
                            prompt_tokens_bound=tokens.prompt_tokens_bound(
                                provider=fallback, model_id=fallback_id, messages=run.rendered_input
                            ),
                        )
                        for fallback, fallback_id in fallbacks
                    ],
                )
                # Kept on this instance for the request that executes it (runs.inline) and finishes it
                # (run_finish): the provider row needs no second query, and with no hold there is
                # none to settle or release.
                run.provider_row = provider
                run.budget_held = bool(held)
                if not inline:
                    _enqueue_on_commit(run.pk)
    except IntegrityError:
        # A concurrent request with the same idempotency key won the race.
        existing = Run.objects.filter(project=project, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return _idempotent_replay(existing, request_hash), False
    if cached is not None:
        # A cached answer counts towards the key's tokens per minute as the provider's answer did:
        # the limit caps what a key takes through the platform, not what the provider spent.
        ratelimit.token_usage_record(api_key=api_key, tokens=cached.prompt_tokens + cached.completion_tokens)
        logger.info("run answered from the response cache", extra={"run_id": str(run.pk), "model": cached.model})
        return run, True
    # An inline run's request logs its end ("run finished") a moment later: its start is for debugging.
    logger.log(
        logging.INFO if not inline else logging.DEBUG,
        "run queued" if not inline else "run started inline",
        extra={"run_id": str(run.pk), "provider": provider.name, "model": model_id},
    )
    return run, True


def _run_create_transaction(
    *, project: Project, api_key: APIKey | None, cached: bool
) -> "transaction.Atomic | contextlib.nullcontext[None]":
    """The transaction run_create writes in; none when its one write is the run's INSERT (no budget
    applies, so no hold goes with it, and it is not a cached answer): a statement in autocommit is
    one round trip to the database where BEGIN, INSERT, COMMIT are three. Inside a caller's
    transaction it is always a savepoint, so losing the idempotency key's race leaves that usable."""
    if cached or connection.in_atomic_block or billing_selectors.budget_ids_applying(project=project, api_key=api_key):
        return transaction.atomic()
    return contextlib.nullcontext()


def _fallbacks_check(params: dict[str, Any], *, from_request: bool) -> list[tuple[Provider, str]]:
    """The provider and model id of each of the run's fallbacks, checked as the run's own model is
    (model_check), or a ValidationFailed naming it: `params.fallbacks.<i>` when the request gave them,
    `prompt` when they are the version's (as for the version's own model)."""
    checked = []
    for index, fallback in enumerate(params.get("fallbacks") or []):
        if from_request:
            checked.append(model_check(model=fallback, field=f"params.fallbacks.{index}"))
            continue
        try:
            checked.append(model_check(model=fallback, field="prompt"))
        except ValidationFailed as exc:
            problems = [f"Fallback {index} of the version ({fallback}): {problem}" for problem in exc.fields["prompt"]]
            raise ValidationFailed(
                f"Fallback {index} of the version: {exc.message}", fields={"prompt": problems}, code=exc.code
            ) from None
    return checked


def _cached_answer(
    *, project: Project, models: list[str], messages: list[dict[str, Any]], params: dict[str, Any]
) -> response_cache.CachedAnswer | None:
    key = response_cache.request_key(project_id=project.pk, models=models, messages=messages, params=params)
    ttl = response_cache.cache_ttl(params)
    if key is None or ttl is None:
        return None
    return response_cache.answer_get(key=key, max_age=ttl)


def _cached_run_create(
    *, fields: dict[str, Any], answer: response_cache.CachedAnswer, inline: bool, now: datetime
) -> Run:
    """A run answered from the response cache, born finished: succeeded, `cached`, the answer's output,
    usage and model (the one that answered, maybe a fallback), no attempt. Not charged and not held
    against a budget: it cost nothing (run_finish with cached=True writes no cost entry). Precondition:
    inside run_create's transaction."""
    run = Run.objects.create(
        **{**fields, "provider": answer.provider, "model": answer.model},
        execution=Run.Execution.INLINE if inline else Run.Execution.WORKER,
        started_at=now,
    )
    result = RunResult(
        output=answer.output,
        finish_reason=answer.finish_reason,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        tokens_estimated=answer.tokens_estimated,
        latency_ms=0,
    )
    run_finish(run=run, status=Run.Status.SUCCEEDED, expected=Q(status=Run.Status.QUEUED), result=result, cached=True)
    run.refresh_from_db()
    return run


def _idempotent_replay(existing: Run, request_hash: str) -> Run:
    if existing.request_hash != request_hash:
        raise Conflict(
            "This Idempotency-Key was used with a different request body.",
            fields={"Idempotency-Key": ["Already used with a different body."]},
            code="idempotency_key_reused",
        )
    return existing


def _enqueue(run_id: uuid.UUID, delay_ms: int | None = None) -> bool:
    """Hands the run's message to the broker, then marks the run as enqueued (the outbox's "sent").

    Never raises: a broker that is down (or a process that dies before this) leaves the run queued
    with `enqueued_at` NULL, and recovery sends it once the broker is back. So a committed run always
    executes; the caller's response never depends on the broker. Returns whether the send succeeded.
    """
    from runs.tasks import execute_run  # the actor module imports this one

    if not send_or_log(execute_run, str(run_id), delay_ms=delay_ms, what="run message", run_id=str(run_id)):
        return False
    try:
        Run.objects.filter(pk=run_id, status=Run.Status.QUEUED, enqueued_at__isnull=True).update(
            enqueued_at=timezone.now()
        )
    except Exception:  # the message is out; a lost marker only costs recovery one redundant send
        logger.warning("run enqueued but not marked", extra={"run_id": str(run_id)}, exc_info=True)
    return True


def _enqueue_on_commit(run_id: uuid.UUID, delay_ms: int | None = None) -> None:
    transaction.on_commit(lambda: _enqueue(run_id, delay_ms))


def run_cancel(*, run: Run) -> Run:
    """Cancels a queued run; it will never execute. Running or finished runs cannot be canceled."""
    ended = run_finish(run=run, status=Run.Status.CANCELED, expected=Q(status=Run.Status.QUEUED))
    run.refresh_from_db()
    if not ended:
        raise Conflict(f"The run is {run.status}; only queued runs can be canceled.", code="not_cancelable")
    return run


@dataclass(frozen=True)
class RunResult:
    """What a succeeded run records: the provider's answer and its counted (or estimated) usage."""

    output: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    tokens_estimated: bool
    latency_ms: int | None


def run_finish(
    *,
    run: Run,
    status: str,
    expected: Q,
    error_code: str = "",
    error_message: str = "",
    result: RunResult | None = None,
    attempt_log: list[dict[str, Any]] | None = None,
    cached: bool = False,
) -> bool:
    """Ends a run: the one place that does, whatever ends it (success, failure, cancel, recovery).

    Precondition: `expected` is the state the caller saw (e.g. running attempt 2); `result` is given
    exactly when `status` is charged (succeeded, or incomplete: a stream its client left). In one
    transaction: the status, then every side effect (the cost entry and settling the budget hold
    when charged, releasing the hold otherwise), the webhook event and the batch's next dispatch.
    Returns False and changes nothing when the run has left that state meanwhile (finished, canceled
    or taken over by another worker), so nothing happens twice.

    `attempt_log`: the run's log with the attempt that ends it (attempt_entry), when an attempt does.
    `cached`: the result is the response cache's (runs.response_cache): no cost entry, no hold to
    settle (none was taken), so spend summaries and budgets count only what providers charged.
    """
    if (result is not None) != (status in Run.CHARGED):
        raise ValueError("A result is given exactly for a run that is charged (succeeded or incomplete).")
    now = timezone.now()
    values: dict[str, Any] = {
        "status": status,
        "error_code": error_code,
        "error_message": error_message,
        "finished_at": now,
        "updated_at": now,
        "lease_expires_at": None,
        "next_attempt_at": None,
    }
    if result is not None:
        values.update(
            output=result.output,
            finish_reason=result.finish_reason,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            total_tokens=result.prompt_tokens + result.completion_tokens,
            tokens_estimated=result.tokens_estimated,
            latency_ms=result.latency_ms,
        )
    if attempt_log is not None:
        values["attempt_log"] = attempt_log
    if cached:
        values["cached"] = True
    with transaction.atomic():
        if not Run.objects.filter(expected, pk=run.pk).update(**values):
            return False
        notify.run_finished_on_commit(run.pk)
        for name, value in values.items():  # the caller's instance is the finished run, without a re-read
            setattr(run, name, value)
        held = getattr(run, "budget_held", True)  # unknown (a run loaded by a worker): settle or release
        if result is not None and not cached:
            billing_services.cost_record(
                run_id=run.pk,
                project=run.project,
                created_by=run.created_by,
                api_key=run.api_key,
                provider=run.provider,
                model=run.model,
                prompt_version_id=run.prompt_version_id,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                tokens_estimated=result.tokens_estimated,
            )
            if held:
                billing_services.budget_settle(run_id=run.pk)
        elif held:
            billing_services.budget_release(run_id=run.pk)
        run_event_emit(run=run)
        if run.execution == Run.Execution.WORKER:  # an inline run (the gateway's) is in no batch
            _dispatch_its_batch_on_commit(run)
    return True


def _dispatch_its_batch_on_commit(run: Run) -> None:
    """A batch's run that finishes frees a slot: its batch dispatches again once the finish commits."""
    from runs.tasks import dispatch_batch  # the actor module imports this one

    def dispatch() -> None:
        # Looked up after the commit: a run answered from the cache finishes inside the dispatch that
        # creates it, before its item points at it.
        batch_id = BatchItem.objects.filter(run_id=run.pk).values_list("batch_id", flat=True).first()
        if batch_id is not None:
            send_or_log(dispatch_batch, str(batch_id), what="batch dispatch", batch_id=str(batch_id))

    transaction.on_commit(dispatch, robust=True)  # the run has finished: a failed lookup is only logged


def retry_backoff_ms(attempt: int, retry_after: float | None) -> int:
    """Exponential backoff with full jitter, or the provider's Retry-After when it gave one."""
    if retry_after is not None:
        return int(min(retry_after, settings.RUN_RETRY_MAX_BACKOFF_S) * 1000)
    ceiling = min(settings.RUN_RETRY_BASE_BACKOFF_S * 2 ** (attempt - 1), settings.RUN_RETRY_MAX_BACKOFF_S)
    return int(random.uniform(ceiling / 2, ceiling) * 1000)


def running_attempt(attempt: int) -> Q:
    """The state of a run while attempt number `attempt` holds it."""
    return Q(status=Run.Status.RUNNING, attempts=attempt)


# --- attempts and fallbacks ------------------------------------------------------------------------
#
# A run's models are its own, then its `fallbacks` (params), tried in that order and never twice.
# `provider`/`model` are always the model of the current attempt, so the cost of a run is that of
# the model that answered. Each attempt that ends is logged on the run (`attempt_log`); the log is
# also what tells which models were tried and since which attempt the current one is in use. Every
# write of the log is conditional on the attempt that holds the run (read, append, conditional
# UPDATE), so two writers never interleave.


def attempt_entry(run: Run, attempt: int, *, code: str = "", message: str = "") -> dict[str, Any]:
    """The log entry of attempt number `attempt` on the run's current model; `code` "" for an answer."""
    return {
        "attempt": attempt,
        "provider": run.provider,
        "model": run.model,
        "error_code": code,
        "error_message": message,
        "at": timezone.now().isoformat(),
    }


def _logged_model(entry: dict[str, Any]) -> str:
    return f"{entry.get('provider')}/{entry.get('model')}"


def run_models(run: Run) -> list[str]:
    """The run's models as it was created: its own (the first attempt's, once it moved on), then its
    fallbacks, `<provider>/<model id>` each."""
    own = _logged_model(run.attempt_log[0]) if run.attempt_log else f"{run.provider}/{run.model}"
    return [own, *(run.params.get("fallbacks") or [])]


def _next_model(run: Run) -> str | None:
    """The first fallback not tried yet (neither the current model nor one in the log), or None."""
    tried = {_logged_model(entry) for entry in run.attempt_log} | {f"{run.provider}/{run.model}"}
    return next((model for model in run.params.get("fallbacks") or [] if model not in tried), None)


def _model_attempt(run: Run, attempt: int) -> int:
    """Attempt `attempt`'s number on the run's current model (1 for its first). A model is used from
    the attempt after the last logged one of another model; attempts lost with their worker and not
    logged count too, so a run without fallbacks counts exactly its attempts."""
    current = f"{run.provider}/{run.model}"
    since = next((entry["attempt"] + 1 for entry in reversed(run.attempt_log) if _logged_model(entry) != current), 1)
    return attempt - since + 1


RETRY, FALLBACK, FAIL = "retry", "fallback", "fail"


@dataclass(frozen=True)
class AfterFailure:
    """What follows a failed attempt: RETRY the same model (after a backoff), FALLBACK to `fallback`
    at once, or FAIL the run. `fallback` is the next model to try whatever the action (None when
    none is left); `model_attempt` the failed attempt's number on its model."""

    action: str
    fallback: str | None
    model_attempt: int


def after_failure(*, run: Run, attempt: int, retryable: bool, rate_limited: bool) -> AfterFailure:
    """The retry and fallback policy, the same for queued and inline runs and for recovery.

    A 429 moves to the next model at once (another model is not rate limited by this one's limit);
    without one left it is retried like any transient failure. A retryable failure is retried on the
    same model up to RUN_MAX_ATTEMPTS attempts of that model, then moves on. A failure that is not
    retryable (a 400, an unknown model, a failed authentication) fails the run: OpenAI's and
    LiteLLM's fallbacks do not move on for those either, as the request itself is what is wrong,
    and trying it elsewhere would only spend money. So a run makes at most RUN_MAX_ATTEMPTS attempts
    per model, which is what bounds its attempts, recovery's included.

    Precondition: `run` as attempt `attempt` holds it (its log without this failure).
    """
    fallback = _next_model(run)
    model_attempt = _model_attempt(run, attempt)
    if rate_limited and fallback is not None:
        action = FALLBACK
    elif retryable and model_attempt < settings.RUN_MAX_ATTEMPTS:
        action = RETRY
    elif retryable and fallback is not None:
        action = FALLBACK
    else:
        action = FAIL
    return AfterFailure(action=action, fallback=fallback, model_attempt=model_attempt)


def provider_after_failure(*, run: Run, attempt: int, error: clients.ProviderError) -> AfterFailure:
    """after_failure for a provider's error."""
    return after_failure(run=run, attempt=attempt, retryable=error.retryable, rate_limited=error.code == "rate_limited")


def fallback_values(fallback: str) -> dict[str, str]:
    """The fields of a run that moves to `fallback` (`<provider>/<model id>`)."""
    provider_name, model_id = model_split(fallback)
    return {"provider": provider_name, "model": model_id}


def _claim(run_id: str) -> Run | None:
    """Claims the run for a new attempt: a queued run, or a running one whose lease lapsed (its worker
    died) with attempts left. One conditional UPDATE, so of two deliveries racing one wins.

    A lapsed run takes this shortcut only below RUN_MAX_ATTEMPTS attempts in all; one on a fallback
    past that waits for recovery, which counts its attempts per model (after_failure) and queues it."""
    now = timezone.now()
    lapsed = Q(status=Run.Status.RUNNING, lease_expires_at__lt=now, attempts__lt=settings.RUN_MAX_ATTEMPTS)
    claimed = (
        Run.objects.filter(pk=run_id)
        .filter(Q(status=Run.Status.QUEUED) | lapsed)
        .update(
            status=Run.Status.RUNNING,
            started_at=now,  # of this attempt
            attempts=F("attempts") + 1,
            lease_expires_at=leases.lease_until(now),
            next_attempt_at=None,
            updated_at=now,
        )
    )
    if not claimed:
        return None
    return Run.objects.select_related("api_key", "project").get(pk=run_id)


def run_execute(*, run_id: str) -> None:
    """Executes a run once per claim. Idempotent: a run that is finished, canceled, or running under
    another worker's live lease is left alone, so a redelivered message calls no provider; a run whose
    worker died (lease lapsed) is taken over, so a redelivery after a crash does execute it."""
    run = _claim(run_id)
    if run is None:
        logger.info("run not claimable; nothing to do", extra={"run_id": run_id})
        return
    attempt = run.attempts
    with leases.held(run.pk, attempt):
        provider = provider_by_name(run.provider)
        try:
            if provider is None:
                raise clients.ProviderError(
                    code="unknown_provider", message=f"Provider {run.provider!r} no longer exists.", retryable=False
                )
            completion = clients.complete(
                provider=provider, model_id=run.model, messages=run.rendered_input, params=run.params
            )
        except clients.ProviderError as exc:
            _record_failure(run, attempt, exc)
            return
        except TimeLimitExceeded:
            run_fail(run, attempt, code="time_limit_exceeded", message="The run exceeded its time limit.")
            return
        except Exception:
            logger.exception("run crashed", extra={"run_id": run_id})
            run_fail(run, attempt, code="internal_error", message="Internal error while executing the run.")
            return
        run_succeed(run, attempt, provider, completion)


def run_succeed(
    run: Run, attempt: int, provider: Provider, completion: Any, *, status: str = Run.Status.SUCCEEDED
) -> bool:
    """Records what the provider answered (`completion`: a clients.Completion, or what a stream
    gathered) and charges it, if `attempt` still holds the run; tokens the provider did not count
    are estimated. `status` is incomplete for a stream its client left. Returns whether it did."""
    estimated = completion.prompt_tokens is None or completion.completion_tokens is None
    prompt_tokens = completion.prompt_tokens
    completion_tokens = completion.completion_tokens
    if prompt_tokens is None:
        prompt_tokens = tokens.estimate_tokens(provider=provider, model_id=run.model, messages=run.rendered_input)
    if completion_tokens is None:
        completion_tokens = tokens.estimate_tokens(provider=provider, model_id=run.model, text=completion.text)
    # Counted before the run shows as succeeded: the provider spent these tokens whatever happens next.
    ratelimit.token_usage_record(api_key=run.api_key, tokens=prompt_tokens + completion_tokens)
    result = RunResult(
        output=completion.text,
        finish_reason=completion.finish_reason or "",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        tokens_estimated=estimated,
        latency_ms=completion.latency_ms,
    )
    if status == Run.Status.SUCCEEDED:
        # Stored before the run shows as succeeded, so whoever sees it succeeded finds its answer (a
        # batch's next identical item, say). Kept even if the run was taken over meanwhile: it is
        # still the provider's answer to this request.
        _cache_store(run, result)
    # Conditional on this attempt still holding the run: one failed by recovery, or taken over after
    # this worker lost its lease, is neither resurrected nor charged twice.
    log = [*run.attempt_log, attempt_entry(run, attempt)]
    if not run_finish(run=run, status=status, expected=running_attempt(attempt), result=result, attempt_log=log):
        logger.warning("run finished or taken over elsewhere; result dropped", extra={"run_id": str(run.pk)})
        return False
    logger.info(
        "run finished",
        extra={
            "run_id": str(run.pk),
            "status": status,
            "latency_ms": completion.latency_ms,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    )
    return True


def _cache_store(run: Run, result: RunResult) -> None:
    """Keeps a cacheable run's answer for its `ttl` (runs.response_cache), under the request it answered."""
    ttl = response_cache.cache_ttl(run.params)
    key = response_cache.request_key(
        project_id=run.project_id, models=run_models(run), messages=run.rendered_input, params=run.params
    )
    if key is None or ttl is None:
        return
    answer = response_cache.CachedAnswer(
        provider=run.provider,
        model=run.model,
        output=result.output,
        finish_reason=result.finish_reason,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        tokens_estimated=result.tokens_estimated,
        stored_at=time.time(),
    )
    response_cache.answer_put(key=key, answer=answer, ttl=ttl)


def _record_failure(run: Run, attempt: int, exc: clients.ProviderError) -> None:
    """Queues the run again for its next attempt (the same model after a backoff, or its next model
    at once), or fails it: provider_after_failure decides."""
    step = provider_after_failure(run=run, attempt=attempt, error=exc)
    if step.action == FAIL:
        run_fail(run, attempt, code=exc.code, message=exc.message)
        return
    moved = fallback_values(step.fallback) if step.action == FALLBACK and step.fallback else {}
    delay_ms = 0 if moved else retry_backoff_ms(step.model_attempt, exc.retry_after)
    now = timezone.now()
    with transaction.atomic():
        updated = Run.objects.filter(running_attempt(attempt), pk=run.pk).update(
            status=Run.Status.QUEUED,
            error_code=exc.code,
            error_message=exc.message,
            attempt_log=[*run.attempt_log, attempt_entry(run, attempt, code=exc.code, message=exc.message)],
            next_attempt_at=now + timedelta(milliseconds=delay_ms),
            enqueued_at=None,
            lease_expires_at=None,
            updated_at=now,
            **moved,
        )
        if updated:
            _enqueue_on_commit(run.pk, delay_ms)
    logger.warning(
        "run attempt failed; trying its next model" if moved else "run attempt failed; retrying",
        extra={
            "run_id": str(run.pk),
            "attempt": attempt,
            "error_code": exc.code,
            "delay_ms": delay_ms,
            **({"next_model": step.fallback} if moved else {}),
        },
    )


def run_fail(run: Run, attempt: int, *, code: str, message: str) -> None:
    """Fails the run if attempt `attempt` still holds it, logging that attempt's error."""
    failed = run_finish(
        run=run,
        status=Run.Status.FAILED,
        expected=running_attempt(attempt),
        error_code=code,
        error_message=message,
        attempt_log=[*run.attempt_log, attempt_entry(run, attempt, code=code, message=message)],
    )
    if failed:
        logger.warning("run failed", extra={"run_id": str(run.pk), "error_code": code})


# --- recovery ------------------------------------------------------------------------------------

WORKER_LOST = "worker_lost"
WORKER_STOPPED = "worker_stopped"


def _lapsed(now: datetime) -> Q:
    """Running runs whose worker stopped renewing their lease (runs from before leases: by their age)."""
    return Q(status=Run.Status.RUNNING) & (
        Q(lease_expires_at__lt=now)
        | Q(lease_expires_at__isnull=True, started_at__lt=now - timedelta(seconds=settings.RUN_LEASE_S))
    )


def _requeue(run: Run, expected: Q, *, code: str, message: str, fallback: str | None = None) -> bool:
    """Puts a running run back in the queue for its next attempt, on `fallback` when given, logging
    the attempt it lost, and sends it (conditional on `expected`, which names that attempt)."""
    now = timezone.now()
    requeued = Run.objects.filter(expected, pk=run.pk).update(
        status=Run.Status.QUEUED,
        lease_expires_at=None,
        enqueued_at=None,
        next_attempt_at=None,
        error_code=code,
        error_message=message,
        attempt_log=[*run.attempt_log, attempt_entry(run, run.attempts, code=code, message=message)],
        updated_at=now,
        **(fallback_values(fallback) if fallback else {}),
    )
    if requeued:
        _enqueue(run.pk)
    return bool(requeued)


def runs_recover(*, now: datetime | None = None) -> dict[str, int]:
    """One recovery pass; safe to run in every worker at once (each step is a conditional UPDATE).

    - `sent`: queued runs with no message known to exist (the broker was down when they were
      committed or retried, or the process died first) get one, after RUN_RELAY_AFTER_S.
    - `resent`: queued runs whose message was accepted but never consumed within
      RUN_RECOVER_QUEUED_AFTER_S (the broker lost it: a restart without persistence, a failover, a
      flush) get another; a duplicate message is harmless, the claim lets one through.
    - `requeued`: running runs whose lease lapsed (their worker died) go back to the queue, or
      `failed` as `worker_lost` through run_finish. A lost attempt counts as a retryable failure of
      its model (after_failure): retried until the model used RUN_MAX_ATTEMPTS attempts, then on the
      run's next fallback, then failed; so a run with fallbacks makes at most RUN_MAX_ATTEMPTS per
      model, and recovery ends. An inline run (the gateway's) whose process died is failed at once:
      its client is gone.
    """
    now = now or timezone.now()
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    counts = {"sent": 0, "resent": 0, "requeued": 0, "failed": 0}

    relay_cutoff = now - timedelta(seconds=settings.RUN_RELAY_AFTER_S)
    unsent = Q(status=Run.Status.QUEUED, enqueued_at__isnull=True, updated_at__lt=relay_cutoff)
    for run_id in Run.objects.filter(unsent & due).values_list("pk", flat=True)[:BATCH]:
        # Touch first, conditionally: of several workers recovering at once, one sends.
        if Run.objects.filter(unsent, pk=run_id).update(updated_at=now) and _enqueue(run_id):
            counts["sent"] += 1

    lost_cutoff = now - timedelta(seconds=settings.RUN_RECOVER_QUEUED_AFTER_S)
    lost = Q(status=Run.Status.QUEUED, enqueued_at__lt=lost_cutoff) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=lost_cutoff)
    )
    for run_id in Run.objects.filter(lost).values_list("pk", flat=True)[:BATCH]:
        if Run.objects.filter(lost, pk=run_id).update(enqueued_at=None, updated_at=now) and _enqueue(run_id):
            counts["resent"] += 1

    lapsed = _lapsed(now)
    for run in Run.objects.filter(lapsed).select_related("project", "api_key")[:BATCH]:
        expected = lapsed & Q(attempts=run.attempts)
        step = after_failure(run=run, attempt=run.attempts, retryable=True, rate_limited=False)
        # An inline run's request is gone with its process: nobody would get a second attempt's answer.
        if step.action != FAIL and run.execution == Run.Execution.WORKER:
            message = f"Attempt {run.attempts} lost its worker (killed or stopped); the run was queued again."
            fallback = step.fallback if step.action == FALLBACK else None
            counts["requeued"] += _requeue(run, expected, code=WORKER_LOST, message=message, fallback=fallback)
            continue
        if run.execution == Run.Execution.INLINE:
            message = "The process executing this call in its request died; its client is gone, so it is not retried."
        elif not run.attempt_log:
            message = f"Each of the run's {run.attempts} attempts lost its worker (killed or stopped)."
        else:
            message = f"Attempt {run.attempts} lost its worker (killed or stopped); the attempt log has the others."
        if run_finish(
            run=run,
            status=Run.Status.FAILED,
            expected=expected,
            error_code=WORKER_LOST,
            error_message=message,
            attempt_log=[*run.attempt_log, attempt_entry(run, run.attempts, code=WORKER_LOST, message=message)],
        ):
            counts["failed"] += 1
    if any(counts.values()):
        logger.warning("runs recovered", extra=counts)
    return counts


def runs_hand_back(*, held: dict[uuid.UUID, int]) -> int:
    """Queues again, at once, the runs a stopping worker still holds (run id -> attempt), so another
    worker takes them over without waiting for their leases to lapse. Returns how many."""
    message = "The worker stopped before the attempt finished; the run was queued again."
    runs = Run.objects.filter(pk__in=list(held)).only("pk", "provider", "model", "attempts", "attempt_log")
    return sum(_requeue(run, running_attempt(held[run.pk]), code=WORKER_STOPPED, message=message) for run in runs)
