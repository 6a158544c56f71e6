"""Runs executed in the request that asks for them (the OpenAI-compatible gateway): no queue hop.

`services.run_create(inline=True)` records the run already running its first attempt; here its
provider is called in the request's thread, holding the run's lease, with the retry policy of queued
runs (RUN_MAX_ATTEMPTS, the same backoff or the provider's Retry-After), and the run ends through
`run_finish` like any run: recorded, charged, rate-limited and budgeted alike. One difference: a wait
between attempts longer than INLINE_RETRY_MAX_WAIT_S is not waited in a request; the run fails with
the provider's error (and its Retry-After) at once. A process that dies mid-call leaves the lease to
lapse, and recovery fails the run as `worker_lost`: its client is gone (services.runs_recover).

A stream (`run_stream`) retries only until its first chunk; after that the client has part of an
answer. It ends succeeded, failed (the provider broke off), or incomplete when the client leaves
half way: then the provider's connection is closed and what was generated is charged.
"""

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from providers import clients
from providers.checks import provider_by_name
from providers.clients import Completion, ProviderError, StreamChunk
from providers.models import Provider
from runs import leases, services
from runs.models import Run

logger = logging.getLogger(__name__)

# The finish reason of a stream its client left before the end.
CLIENT_DISCONNECTED = "client_disconnected"


class RunFailed(Exception):
    """The run failed (it is recorded as failed): `error` is the provider's last refusal."""

    def __init__(self, run: Run, error: ProviderError):
        super().__init__(error.message)
        self.run = run
        self.error = error


def _provider(run: Run) -> Provider:
    known: Provider | None = getattr(run, "provider_row", None)  # run_create's, for the same model
    if known is not None and known.name == run.provider:
        return known
    provider = provider_by_name(run.provider)
    if provider is None:
        raise ProviderError("unknown_provider", f"Provider {run.provider!r} no longer exists.", retryable=False)
    return provider


def _next_attempt(run: Run, attempt: int, error: ProviderError) -> bool:
    """After a failed attempt: waits out the backoff and takes the next attempt (True), on the same
    model or on the run's next one (services.provider_after_failure), or fails the run (False) when
    the error is final or no model has attempts left. A wait too long for a request moves to the next
    model instead, or fails the run when none is left. `run` follows: its model and attempt log."""
    step = services.provider_after_failure(run=run, attempt=attempt, error=error)
    wait_ms = services.retry_backoff_ms(step.model_attempt, error.retry_after) if step.action == services.RETRY else 0
    if wait_ms > settings.INLINE_RETRY_MAX_WAIT_S * 1000:
        step = replace(step, action=services.FALLBACK if step.fallback else services.FAIL)
        wait_ms = 0
    if step.action == services.FAIL:
        services.run_fail(run, attempt, code=error.code, message=error.message)
        return False
    moved = services.fallback_values(step.fallback) if step.action == services.FALLBACK and step.fallback else {}
    logger.warning(
        "inline run attempt failed; trying its next model" if moved else "inline run attempt failed; retrying",
        extra={"run_id": str(run.pk), "attempt": attempt, "error_code": error.code, "delay_ms": wait_ms, **moved},
    )
    time.sleep(wait_ms / 1000)
    now = timezone.now()
    log = [*run.attempt_log, services.attempt_entry(run, attempt, code=error.code, message=error.message)]
    taken = Run.objects.filter(services.running_attempt(attempt), pk=run.pk).update(
        attempts=F("attempts") + 1,
        error_code=error.code,
        error_message=error.message,
        attempt_log=log,
        started_at=now,
        lease_expires_at=leases.lease_until(now),
        updated_at=now,
        **moved,
    )
    if taken:  # the next attempt's cost, log entries and answer are of this model
        run.attempt_log = log
        for name, value in moved.items():
            setattr(run, name, value)
    return bool(taken)


def run_inline(run: Run) -> Run:
    """Executes an inline run to its end; the succeeded run, or RunFailed. A run answered from the
    response cache (run_create found it there) is finished already and returned as it is."""
    if run.cached:
        return run
    attempt = run.attempts
    while True:
        try:
            provider = _provider(run)
            with leases.held(run.pk, attempt):
                completion = clients.complete(
                    provider=provider, model_id=run.model, messages=run.rendered_input, params=run.params
                )
        except ProviderError as error:
            if _next_attempt(run, attempt, error):
                attempt += 1
                continue
            run.refresh_from_db()
            raise RunFailed(run, error) from None
        if not services.run_succeed(run, attempt, provider, completion):
            run.refresh_from_db()  # finished elsewhere meanwhile (recovery): show what it is
        return run


@dataclass
class InlineStream:
    """The chunks of a streamed inline run, as they arrive; once iterated to the end, `usage` holds
    the run's counted (or estimated) tokens and `run` the finished run."""

    run: Run
    attempt: int
    provider: Provider | None  # None for a cached answer: no provider is called
    chunks: Iterator[StreamChunk]
    started: float
    parts: list[str] = field(default_factory=list)
    finish_reason: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: ProviderError | None = None

    def __iter__(self) -> Iterator[StreamChunk]:
        if self.run.cached:  # the response cache's answer, as one chunk: the run is finished already
            for chunk in self.chunks:
                self._take(chunk)
                yield chunk
            return
        ended = False
        try:
            with leases.held(self.run.pk, self.attempt):
                for chunk in self.chunks:
                    self._take(chunk)
                    yield chunk
                if not self.finish_reason:
                    raise ProviderError(
                        "stream_cut", "The provider's stream ended before it said it was done.", retryable=False
                    )
            ended = True
            self._finish(Run.Status.SUCCEEDED)
        except ProviderError as error:
            ended = True
            self.error = error
            services.run_fail(self.run, self.attempt, code=error.code, message=f"{error.message} (mid-stream)")
        finally:
            if not ended:  # the client went away (GeneratorExit): stop the provider, charge what it made
                close = getattr(self.chunks, "close", None)
                if close is not None:
                    close()
                self.finish_reason = CLIENT_DISCONNECTED
                self._finish(Run.Status.INCOMPLETE)
            self.run.refresh_from_db()

    def _take(self, chunk: StreamChunk) -> None:
        self.parts.append(chunk.text)
        if chunk.finish_reason:
            self.finish_reason = chunk.finish_reason
        if chunk.prompt_tokens is not None:
            self.prompt_tokens = chunk.prompt_tokens
        if chunk.completion_tokens is not None:
            self.completion_tokens = chunk.completion_tokens

    def _finish(self, status: str) -> None:
        completion = Completion(
            text="".join(self.parts),
            finish_reason=self.finish_reason,
            # A cut stream's counts are estimated: the provider's usage chunk never came.
            prompt_tokens=self.prompt_tokens if status == Run.Status.SUCCEEDED else None,
            completion_tokens=self.completion_tokens if status == Run.Status.SUCCEEDED else None,
            latency_ms=round((time.perf_counter() - self.started) * 1000),
            model=self.run.model,
        )
        assert self.provider is not None  # only a cached answer has none, and it is never finished here
        services.run_succeed(self.run, self.attempt, self.provider, completion, status=status)


def run_stream(run: Run) -> InlineStream:
    """Opens the provider's stream for an inline run, retrying (and moving to the run's fallbacks) as
    run_inline does until it opens; RunFailed when it never does. A run answered from the response
    cache streams its answer as one chunk."""
    if run.cached:
        answer = StreamChunk(
            text=run.output,
            finish_reason=run.finish_reason or "stop",
            prompt_tokens=run.prompt_tokens,
            completion_tokens=run.completion_tokens,
        )
        return InlineStream(run=run, attempt=0, provider=None, chunks=iter([answer]), started=time.perf_counter())
    attempt = run.attempts
    while True:
        try:
            provider = _provider(run)
            started = time.perf_counter()
            chunks = clients.open_stream(
                provider=provider, model_id=run.model, messages=run.rendered_input, params=run.params
            )
        except ProviderError as error:
            if _next_attempt(run, attempt, error):
                attempt += 1
                continue
            run.refresh_from_db()
            raise RunFailed(run, error) from None
        return InlineStream(run=run, attempt=attempt, provider=provider, chunks=chunks, started=started)
