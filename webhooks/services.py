"""Writes for webhooks: endpoints, emitting events, delivering them (the actor's work), recovery.

Other apps emit events with `webhook_emit` inside the transaction that writes the fact, so a
delivery exists exactly when the fact does; `webhooks.tasks.deliver_webhook` sends it after commit.
The payload is built by the emitting app: this app imports none of them.

Receivers verify `X-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>` (README,
"Webhooks"). Neither the secret nor a signature is ever logged; the endpoint row holds the secret only
encrypted (webhooks.secrets), decrypted just to sign.

A delivery whose message was lost (the broker down at commit, a worker killed mid-attempt) stays
pending until `webhook_deliveries_recover` sends it again.
"""

import hashlib
import hmac
import json
import logging
import random
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import httpx2
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from dramatiq.middleware import TimeLimitExceeded

from accounts.models import Project, User
from llmops.config_cache import ProcessCache
from llmops.errors import ValidationFailed
from llmops.queue import send_or_log
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from webhooks.secrets import SECRET_PREFIX, SecretUndecryptable, secret_decrypt, secret_encrypt
from webhooks.url_guard import URLRefused, URLUnresolvable, url_check

logger = logging.getLogger(__name__)

USER_AGENT = "llmops-webhooks/1"
# A message may arrive a little before `next_attempt_at` when worker clocks disagree.
_CLOCK_SLACK = timedelta(seconds=5)
# Most deliveries one recovery pass sends; the next pass takes the rest.
_RECOVER_BATCH = 500


def _validated_url(url: str) -> str:
    try:
        return url_check(url)
    except (URLRefused, URLUnresolvable) as exc:
        raise ValidationFailed(f"Invalid webhook URL: {exc}", fields={"url": [str(exc)]}) from None


def _validated_events(events: Any) -> list[str]:
    if not isinstance(events, list) or not events:
        raise ValidationFailed("Which events?", fields={"events": ["At least one event is required."]})
    known = WebhookEvent.values
    unknown = [str(event) for event in events if event not in known]
    if unknown:
        raise ValidationFailed(
            "Unknown events.", fields={"events": [f"Unknown: {', '.join(unknown)}. Known: {', '.join(known)}."]}
        )
    return [event for event in known if event in events]  # deduplicated, in a stable order


# --- endpoints -------------------------------------------------------------------------------------


def webhook_endpoint_create(
    *, project: Project, created_by: User | None = None, url: str, events: list[str], description: str = ""
) -> tuple[WebhookEndpoint, str]:
    """Registers an endpoint and returns it with its signing secret, which is shown only this once
    (the row keeps it encrypted)."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint.objects.create(
        project=project,
        created_by=created_by,
        url=_validated_url(url),
        events=_validated_events(events),
        description=description,
        secret=secret_encrypt(secret),
    )
    return endpoint, secret


def webhook_endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    events: list[str] | None = None,
    description: str | None = None,
    is_active: bool | None = None,
) -> WebhookEndpoint:
    """Changes the given fields; a new URL is checked like at registration. The secret never changes."""
    if url is not None:
        endpoint.url = _validated_url(url)
    if events is not None:
        endpoint.events = _validated_events(events)
    if description is not None:
        endpoint.description = description
    if is_active is not None:
        endpoint.is_active = is_active
    # Not the secret: a copy read before a re-encryption must not write the old ciphertext back.
    endpoint.save(update_fields=["url", "events", "description", "is_active", "updated_at"])
    return endpoint


def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Deletes the endpoint and its delivery log; pending deliveries are then never sent."""
    endpoint.delete()


# --- emitting --------------------------------------------------------------------------------------


# Every finished run asks which of its project's endpoints subscribe to its event: this process keeps
# the answers (llmops/config_cache.py; webhooks.signals invalidates them on any write to an endpoint).
subscriptions: ProcessCache[tuple[uuid.UUID, ...]] = ProcessCache("webhook subscriptions")


def subscribed_endpoint_ids(*, project_id: uuid.UUID, event: str) -> tuple[uuid.UUID, ...]:
    """The active endpoints of the project subscribed to `event`, oldest first."""

    def load() -> tuple[uuid.UUID, ...]:
        # Few endpoints per project, and JSON containment is not portable to SQLite: filtered here.
        rows = WebhookEndpoint.objects.filter(project_id=project_id, is_active=True).order_by("created_at")
        return tuple(pk for pk, events in rows.values_list("pk", "events") if event in events)

    return subscriptions.fetch((project_id, event), load)


def webhook_emit(
    *,
    project: Project,
    event: str,
    payload: dict[str, Any] | Callable[[], dict[str, Any]],
    dedupe_key: str = "",
) -> list[WebhookDelivery]:
    """Records one delivery per active endpoint of `project` subscribed to `event` and sends each after
    commit. Call it inside the transaction that writes the fact. With `dedupe_key`, an endpoint that
    already has a delivery with that key gets no second one (for emitters that may run twice).
    `payload` may be a function, called only when an endpoint subscribes (once)."""
    if event not in WebhookEvent.values:
        raise ValueError(f"Unknown webhook event {event!r}.")
    endpoint_ids = subscribed_endpoint_ids(project_id=project.pk, event=event)
    if not endpoint_ids:
        return []  # the common case: no query (from this process's cache), no writes
    if callable(payload):
        payload = payload()
    deliveries: list[WebhookDelivery] = []
    with transaction.atomic():
        for endpoint_id in endpoint_ids:
            if dedupe_key and WebhookDelivery.objects.filter(endpoint_id=endpoint_id, dedupe_key=dedupe_key).exists():
                continue
            try:
                with transaction.atomic():  # a savepoint: losing a race on the dedupe key is not an error
                    delivery = WebhookDelivery.objects.create(
                        endpoint_id=endpoint_id, event=event, payload=payload, dedupe_key=dedupe_key
                    )
            except IntegrityError:
                if not dedupe_key:
                    raise
                continue
            deliveries.append(delivery)
            # _enqueue never raises: a broker that is down must not turn the committed fact into a 500.
            transaction.on_commit(partial(_enqueue, delivery.pk))
    if deliveries:
        logger.info("webhook event emitted", extra={"event": event, "deliveries": len(deliveries)})
    return deliveries


def _enqueue(delivery_id: uuid.UUID, delay_ms: int | None = None) -> bool:
    """Sends the delivery's message; True when the broker took it. Never raises: the delivery row is
    committed already, and webhook_deliveries_recover sends it if this message is lost."""
    from webhooks.tasks import deliver_webhook  # the actor module imports this one

    return send_or_log(
        deliver_webhook, str(delivery_id), delay_ms=delay_ms, what="webhook delivery", delivery_id=str(delivery_id)
    )


def webhook_deliveries_recover(*, now: datetime | None = None) -> int:
    """Sends again the pending deliveries whose message may be lost; returns how many were sent.

    A delivery is overdue when it is still pending WEBHOOK_RECOVER_AFTER_S after it was due: emitted
    and never attempted, its retry never came, or its attempt's lease ran out (the worker died). Safe
    on several workers at once: each delivery is taken by a conditional UPDATE that moves its
    next_attempt_at to `now` before its message is sent, so one of them sends it. An overdue delivery
    that used its last attempt can get no other message and is marked failed.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.WEBHOOK_RECOVER_AFTER_S)
    overdue = Q(status=WebhookDelivery.Status.PENDING) & (
        Q(next_attempt_at__lt=cutoff) | Q(next_attempt_at__isnull=True, created_at__lt=cutoff)
    )
    exhausted = WebhookDelivery.objects.filter(overdue, attempts__gte=settings.WEBHOOK_MAX_ATTEMPTS).update(
        status=WebhookDelivery.Status.FAILED,
        last_error="The last attempt never finished (its worker stopped).",
        next_attempt_at=None,
        updated_at=now,
    )
    retry = overdue & Q(attempts__lt=settings.WEBHOOK_MAX_ATTEMPTS)
    sent = 0
    for pk in (
        WebhookDelivery.objects.filter(retry).order_by("created_at").values_list("pk", flat=True)[:_RECOVER_BATCH]
    ):
        # Taken first, conditionally: of several workers recovering at once, one sends.
        if WebhookDelivery.objects.filter(retry, pk=pk).update(next_attempt_at=now, updated_at=now) and _enqueue(pk):
            sent += 1
    if sent or exhausted:
        logger.warning("webhook deliveries recovered", extra={"sent": sent, "failed": exhausted})
    return sent


# --- delivering ------------------------------------------------------------------------------------


def signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The X-Signature header value: HMAC-SHA256 over f"{timestamp}.{body}"."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def request_body(delivery: WebhookDelivery) -> bytes:
    project = delivery.endpoint.project
    envelope = {
        "id": str(delivery.pk),
        "event": delivery.event,
        "project": {"id": str(project.pk), "slug": project.slug},
        "created_at": delivery.created_at.isoformat(),
        "data": delivery.payload,
    }
    return json.dumps(envelope, cls=DjangoJSONEncoder, separators=(",", ":")).encode()


def backoff_s(attempt: int) -> float:
    """Exponential backoff with jitter: about base * 2^(attempt-1) seconds, capped."""
    ceiling = min(settings.WEBHOOK_RETRY_BASE_BACKOFF_S * 2 ** (attempt - 1), settings.WEBHOOK_RETRY_MAX_BACKOFF_S)
    return random.uniform(ceiling / 2, ceiling)


def attempt_time_limit() -> timedelta:
    """The actor's time limit: name resolution plus the HTTP timeouts, with margin."""
    return timedelta(seconds=settings.WEBHOOK_TIMEOUT_S * 2 + 20)


def _attempt_lease() -> timedelta:
    # Outlives the time limit, so a duplicate message never claims a delivery still being sent.
    return attempt_time_limit() + timedelta(seconds=10)


def webhook_deliver(*, delivery_id: str) -> None:
    """Makes one attempt at a pending delivery and schedules the next one on failure.

    Idempotent: a succeeded or failed delivery is never sent again, and a pending one is claimed
    (attempt counted, lease taken) before sending, so a duplicate message does not send it twice.
    """
    now = timezone.now()
    claimed = (
        WebhookDelivery.objects.filter(
            pk=delivery_id, status=WebhookDelivery.Status.PENDING, attempts__lt=settings.WEBHOOK_MAX_ATTEMPTS
        )
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + _CLOCK_SLACK))
        .update(attempts=F("attempts") + 1, next_attempt_at=now + _attempt_lease(), updated_at=now)
    )
    if not claimed:
        logger.info("webhook delivery not due; nothing to do", extra={"delivery_id": delivery_id})
        return
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    if not endpoint.is_active:
        _record(delivery, code=None, error="The endpoint is disabled.", final=True)
        return
    try:
        url = url_check(endpoint.url)  # again: the name may resolve elsewhere than at registration
    except URLRefused as exc:
        _record(delivery, code=None, error=f"Refused: {exc}", final=True)
        return
    except URLUnresolvable as exc:
        _record(delivery, code=None, error=str(exc))
        return
    try:
        secret = secret_decrypt(endpoint.secret)
    except (SecretUndecryptable, ImproperlyConfigured) as exc:
        # Retried like any failed attempt (not raised, so no crash loop): restoring the key in time
        # lets the delivery through.
        logger.error(
            "webhook signing secret cannot be decrypted",
            extra={"delivery_id": str(delivery.pk), "endpoint_id": str(endpoint.pk), "error": str(exc)},
        )
        _record(delivery, code=None, error=str(exc))
        return

    body = request_body(delivery)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Webhook-Id": str(delivery.pk),
        "X-Webhook-Event": delivery.event,
        "X-Webhook-Timestamp": str(timestamp),
        "X-Signature": signature(secret=secret, timestamp=timestamp, body=body),
    }
    timeout = settings.WEBHOOK_TIMEOUT_S
    try:
        # No redirects: a redirect could point anywhere, past the address check.
        with (
            httpx2.Client(timeout=timeout, follow_redirects=False) as client,
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            code = response.status_code  # the body is never read: receivers answer what they like
    except httpx2.TimeoutException:
        _record(delivery, code=None, error=f"Timed out after {timeout:g}s.")
        return
    except httpx2.HTTPError as exc:
        _record(delivery, code=None, error=f"Connection failed ({type(exc).__name__}).")
        return
    except TimeLimitExceeded:
        _record(delivery, code=None, error="The delivery exceeded its time limit.")
        return
    except Exception:  # a crash must not leave the delivery pending with no message to retry it
        logger.exception("webhook delivery crashed", extra={"delivery_id": str(delivery.pk)})
        _record(delivery, code=None, error="Internal error while sending.")
        return
    if 200 <= code < 300:
        _record(delivery, code=code, error="")
    else:
        _record(delivery, code=code, error=f"The endpoint answered HTTP {code}.")


def _record(delivery: WebhookDelivery, *, code: int | None, error: str, final: bool = False) -> None:
    """Writes the outcome of the attempt just made: succeeded, failed for good, or retried later."""
    now = timezone.now()
    pending = WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookDelivery.Status.PENDING)
    log_extra = {
        "delivery_id": str(delivery.pk),
        "endpoint_id": str(delivery.endpoint_id),
        "event": delivery.event,
        "attempt": delivery.attempts,
        "response_code": code,
    }
    if not error:
        pending.update(
            status=WebhookDelivery.Status.SUCCEEDED,
            last_response_code=code,
            last_error="",
            next_attempt_at=None,
            delivered_at=now,
            updated_at=now,
        )
        logger.info("webhook delivered", extra=log_extra)
        return
    error = error[:500]
    if final or delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        pending.update(
            status=WebhookDelivery.Status.FAILED,
            last_response_code=code,
            last_error=error,
            next_attempt_at=None,
            updated_at=now,
        )
        logger.warning("webhook delivery failed; giving up", extra={**log_extra, "error": error})
        return
    delay = backoff_s(delivery.attempts)
    with transaction.atomic():
        updated = pending.update(
            last_response_code=code,
            last_error=error,
            next_attempt_at=now + timedelta(seconds=delay),
            updated_at=now,
        )
        if updated:
            transaction.on_commit(partial(_enqueue, delivery.pk, int(delay * 1000)))
    logger.warning("webhook attempt failed; retrying", extra={**log_extra, "error": error, "delay_s": round(delay, 3)})
