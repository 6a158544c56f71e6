"""Writes for runs: create (validate, render, enqueue), cancel, execute (the actor's work), recover."""

import hashlib
import json
import logging
import random
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from dramatiq.middleware import TimeLimitExceeded

from accounts.models import APIKey, User
from billing import services as billing_services
from llmops.errors import Conflict, NotFound, ValidationFailed
from prompts import selectors as prompt_selectors
from prompts import services as prompt_services
from prompts.models import PromptVersion
from runs import batches, providers, tokens
from runs.models import Provider, Run
from runs.webhooks import run_event_emit

logger = logging.getLogger(__name__)

DEFAULT_LABEL = "production"


def split_model(model: str) -> tuple[str, str]:
    provider_name, _, model_id = model.partition("/")
    return provider_name, model_id


def _provider_for(model: str, *, field: str) -> tuple[Provider, str]:
    """The enabled provider and model id of a `<provider>/<model id>` string, checked up front so a
    bad model is a 400 now and not a failure in the worker."""
    prompt_services.validate_model(model)
    provider_name, model_id = split_model(model)
    provider = Provider.objects.filter(name=provider_name).first()
    if provider is None:
        raise ValidationFailed(
            f"Unknown provider {provider_name!r}.",
            fields={field: [f"No provider named {provider_name!r}; staff add providers in the admin."]},
            code="unknown_provider",
        )
    if not provider.enabled:
        raise ValidationFailed(
            f"Provider {provider_name!r} is disabled.",
            fields={field: ["This provider is disabled."]},
            code="provider_disabled",
        )
    try:
        providers.check_model(provider=provider, model_id=model_id)
    except providers.ProviderError as exc:
        raise ValidationFailed(exc.message, fields={field: [exc.message]}, code=exc.code) from None
    return provider, model_id


def messages_for(rendered: dict[str, Any]) -> list[dict[str, str]]:
    """Chat messages exactly as sent: text prompts go as one user message."""
    if rendered["kind"] == "text":
        return [{"role": "user", "content": rendered["text"]}]
    return list(rendered["messages"])


def _request_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _resolve_version(
    *, owner: User, prompt_ref: str | None, prompt_version_id: uuid.UUID | None, version: int | None, label: str | None
) -> PromptVersion:
    if prompt_version_id is not None:
        found = PromptVersion.objects.select_related("prompt").filter(pk=prompt_version_id, prompt__owner=owner).first()
        if found is None:
            raise ValidationFailed(
                "Prompt version not found.", fields={"prompt_version_id": ["No such prompt version."]}
            )
        return found
    if not prompt_ref:
        raise ValidationFailed("Which prompt?", fields={"prompt": ["This field is required."]})
    try:
        prompt = prompt_selectors.prompt_get(owner=owner, ref=prompt_ref)
    except NotFound:
        raise ValidationFailed("Prompt not found.", fields={"prompt": ["No such prompt."]}) from None
    if version is None and label is None:
        # With neither, a deployed prompt runs its `production` version, else the latest.
        has_production = prompt.labels.filter(name=DEFAULT_LABEL).exists()
        label = DEFAULT_LABEL if has_production else None
    return prompt_selectors.version_resolve(prompt=prompt, version=version, label=label)


def run_create(
    *,
    owner: User,
    api_key: APIKey | None,
    prompt: str | None = None,
    prompt_version_id: uuid.UUID | None = None,
    version: int | None = None,
    label: str | None = None,
    variables: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    model: str | None = None,
    metadata: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> tuple[Run, bool]:
    """Validates everything, records a queued run and enqueues it after commit.

    Returns (run, created). Nothing is written when validation fails. With an idempotency key, the
    same key and body return the earlier run (created=False); the same key with another body is 409.
    """
    variables = variables or {}
    overrides = prompt_services.validate_params(params or {})
    request_hash = _request_hash(
        {
            "prompt": prompt,
            "prompt_version_id": prompt_version_id,
            "version": version,
            "label": label,
            "variables": variables,
            "params": overrides,
            "model": model,
            "metadata": metadata or {},
        }
    )
    if idempotency_key:
        existing = Run.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _idempotent_replay(existing, request_hash), False
    billing_services.token_rate_check(api_key=api_key)

    prompt_version = _resolve_version(
        owner=owner, prompt_ref=prompt, prompt_version_id=prompt_version_id, version=version, label=label
    )
    rendered = prompt_services.prompt_render(version=prompt_version, values=variables)
    provider, model_id = _provider_for(model or prompt_version.model, field="model" if model else "prompt")
    run_params = {**prompt_version.params, **overrides}
    # Always send a completion cap: it is what bounds the cost a budget reserves for the run.
    run_params.setdefault("max_tokens", settings.BUDGET_DEFAULT_MAX_TOKENS)

    try:
        with transaction.atomic():
            run = Run.objects.create(
                owner=owner,
                api_key=api_key,
                prompt_version=prompt_version,
                variables=variables,
                rendered_input=messages_for(rendered),
                provider=provider.name,
                model=model_id,
                params=run_params,
                metadata=metadata or {},
                idempotency_key=idempotency_key or None,
                request_hash=request_hash,
            )
            # Refused (402) rolls the run back: a refused request leaves nothing behind.
            billing_services.budget_reserve(
                owner=owner,
                api_key=api_key,
                run_id=run.pk,
                provider=provider.name,
                model=model_id,
                prompt_tokens_estimate=tokens.estimate_tokens(
                    provider=provider, model_id=model_id, messages=run.rendered_input
                ),
                max_completion_tokens=run_params["max_tokens"],
            )
            transaction.on_commit(lambda: _enqueue(run.pk))
    except IntegrityError:
        # A concurrent request with the same idempotency key won the race.
        existing = Run.objects.filter(owner=owner, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return _idempotent_replay(existing, request_hash), False
    logger.info("run queued", extra={"run_id": str(run.pk), "provider": provider.name, "model": model_id})
    return run, True


def _idempotent_replay(existing: Run, request_hash: str) -> Run:
    if existing.request_hash != request_hash:
        raise Conflict(
            "This Idempotency-Key was used with a different request body.",
            fields={"Idempotency-Key": ["Already used with a different body."]},
            code="idempotency_key_reused",
        )
    return existing


def _enqueue(run_id: uuid.UUID, delay_ms: int | None = None) -> None:
    from runs.tasks import execute_run  # the actor module imports this one

    execute_run.send_with_options(args=(str(run_id),), delay=delay_ms)


def run_cancel(*, run: Run) -> Run:
    """Cancels a queued run; it will never execute. Running or finished runs cannot be canceled."""
    now = timezone.now()
    with transaction.atomic():
        updated = Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(
            status=Run.Status.CANCELED, finished_at=now, updated_at=now
        )
        if updated:
            billing_services.budget_release(run_id=run.pk)
            batches.on_run_finished(run)
    run.refresh_from_db()
    if not updated:
        raise Conflict(f"The run is {run.status}; only queued runs can be canceled.", code="not_cancelable")
    return run


def _backoff_ms(attempt: int, retry_after: float | None) -> int:
    """Exponential backoff with full jitter, or the provider's Retry-After when it gave one."""
    if retry_after is not None:
        return int(min(retry_after, settings.RUN_RETRY_MAX_BACKOFF_S) * 1000)
    ceiling = min(settings.RUN_RETRY_BASE_BACKOFF_S * 2 ** (attempt - 1), settings.RUN_RETRY_MAX_BACKOFF_S)
    return int(random.uniform(ceiling / 2, ceiling) * 1000)


def run_execute(*, run_id: str) -> None:
    """Executes a queued run once. Idempotent: a run that is not queued (finished, canceled, or
    claimed by another delivery) is left alone, so a redelivered message calls no provider."""
    now = timezone.now()
    claimed = Run.objects.filter(pk=run_id, status=Run.Status.QUEUED).update(
        status=Run.Status.RUNNING,
        started_at=now,  # of this attempt: recovery measures stuck runs from it
        attempts=F("attempts") + 1,
        next_attempt_at=None,
        updated_at=now,
    )
    if not claimed:
        logger.info("run not queued; nothing to do", extra={"run_id": run_id})
        return
    run = Run.objects.select_related("api_key", "owner").get(pk=run_id)
    provider = Provider.objects.filter(name=run.provider).first()
    try:
        if provider is None:
            raise providers.ProviderError(
                code="unknown_provider", message=f"Provider {run.provider!r} no longer exists.", retryable=False
            )
        completion = providers.complete(
            provider=provider, model_id=run.model, messages=run.rendered_input, params=run.params
        )
    except providers.ProviderError as exc:
        _record_failure(run, exc)
        return
    except TimeLimitExceeded:
        _finish_failed(run, code="time_limit_exceeded", message="The run exceeded its time limit.")
        return
    except Exception:
        logger.exception("run crashed", extra={"run_id": run_id})
        _finish_failed(run, code="internal_error", message="Internal error while executing the run.")
        return
    _record_success(run, provider, completion)


def _record_success(run: Run, provider: Provider, completion: Any) -> None:
    estimated = completion.prompt_tokens is None or completion.completion_tokens is None
    prompt_tokens = completion.prompt_tokens
    completion_tokens = completion.completion_tokens
    if prompt_tokens is None:
        prompt_tokens = tokens.estimate_tokens(provider=provider, model_id=run.model, messages=run.rendered_input)
    if completion_tokens is None:
        completion_tokens = tokens.estimate_tokens(provider=provider, model_id=run.model, text=completion.text)
    # Counted before the run shows as succeeded: the provider spent these tokens whatever happens next.
    billing_services.token_usage_record(api_key=run.api_key, tokens=prompt_tokens + completion_tokens)
    now = timezone.now()
    with transaction.atomic():
        # Conditional on still running: a run failed by recovery meanwhile is not resurrected or charged.
        updated = Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(
            status=Run.Status.SUCCEEDED,
            output=completion.text,
            finish_reason=completion.finish_reason or "",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
            tokens_estimated=estimated,
            latency_ms=completion.latency_ms,
            error_code="",
            error_message="",
            finished_at=now,
            updated_at=now,
        )
        if not updated:
            logger.warning("run finished elsewhere; result dropped", extra={"run_id": str(run.pk)})
            return
        billing_services.cost_record(
            run_id=run.pk,
            owner=run.owner,
            api_key=run.api_key,
            provider=run.provider,
            model=run.model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            tokens_estimated=estimated,
        )
        billing_services.budget_settle(run_id=run.pk)
        run_event_emit(run_id=run.pk)
        batches.on_run_finished(run)
    logger.info(
        "run succeeded",
        extra={
            "run_id": str(run.pk),
            "latency_ms": completion.latency_ms,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    )


def _record_failure(run: Run, exc: Any) -> None:
    attempt = run.attempts
    if exc.retryable and attempt < settings.RUN_MAX_ATTEMPTS:
        delay_ms = _backoff_ms(attempt, exc.retry_after)
        now = timezone.now()
        with transaction.atomic():
            updated = Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(
                status=Run.Status.QUEUED,
                error_code=exc.code,
                error_message=exc.message,
                next_attempt_at=now + timedelta(milliseconds=delay_ms),
                updated_at=now,
            )
            if updated:
                transaction.on_commit(lambda: _enqueue(run.pk, delay_ms))
        logger.warning(
            "run attempt failed; retrying",
            extra={"run_id": str(run.pk), "attempt": attempt, "error_code": exc.code, "delay_ms": delay_ms},
        )
        return
    _finish_failed(run, code=exc.code, message=exc.message)


def _finish_failed(run: Run, *, code: str, message: str) -> None:
    now = timezone.now()
    with transaction.atomic():
        updated = Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(
            status=Run.Status.FAILED, error_code=code, error_message=message, finished_at=now, updated_at=now
        )
        if updated:
            billing_services.budget_release(run_id=run.pk)
            run_event_emit(run_id=run.pk)
            batches.on_run_finished(run)
    logger.warning("run failed", extra={"run_id": str(run.pk), "error_code": code})


def runs_recover(*, queued_for: timedelta, running_for: timedelta) -> dict[str, int]:
    """Re-enqueues runs queued too long without a worker picking them up (a lost message) and fails
    runs stuck in `running` past the time limit (a dead worker)."""
    now = timezone.now()
    stale_queued = list(
        Run.objects.filter(status=Run.Status.QUEUED, updated_at__lt=now - queued_for)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lt=now - queued_for))
        .values_list("pk", flat=True)[:1000]
    )
    for run_id in stale_queued:
        # Touch first so the next recovery pass does not enqueue it again right away.
        Run.objects.filter(pk=run_id, status=Run.Status.QUEUED).update(updated_at=now)
        _enqueue(run_id)
    stuck = list(
        Run.objects.filter(status=Run.Status.RUNNING, started_at__lt=now - running_for).values_list("pk", flat=True)[
            :1000
        ]
    )
    failed = 0
    for run_id in stuck:
        # One by one, conditional on still running: only a run failed here has its budget hold released
        # (one that a worker meanwhile finished or queued for a retry keeps its own outcome).
        with transaction.atomic():
            if Run.objects.filter(pk=run_id, status=Run.Status.RUNNING).update(
                status=Run.Status.FAILED,
                error_code="worker_lost",
                error_message="The run exceeded its time limit without finishing (worker lost or killed).",
                finished_at=now,
                updated_at=now,
            ):
                billing_services.budget_release(run_id=run_id)
                failed += 1
    if stale_queued or failed:
        logger.warning("runs recovered", extra={"requeued": len(stale_queued), "failed": failed})
    return {"requeued": len(stale_queued), "failed": failed}
