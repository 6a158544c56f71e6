"""Sending Dramatiq messages from code whose own work is already committed (the outbox pattern)."""

import logging
from typing import Any

import dramatiq

logger = logging.getLogger(__name__)


def send_or_log(actor: dramatiq.Actor, *args: Any, delay_ms: int | None = None, what: str, **extra: Any) -> bool:
    """Sends `actor(*args)`; True when the broker took the message. Never raises: the caller has
    committed the fact the message is about, and its recovery sends it again when the broker is
    back, so a broker that is down must not turn that committed fact into a 500. `what` names the
    message in the warning; `extra` goes to the log record (ids only: never a secret)."""
    try:
        actor.send_with_options(args=args, delay=delay_ms)
    except Exception:  # the broker's errors name the broker, never a secret of ours
        logger.warning("%s not sent; recovery will send it", what, extra=extra, exc_info=True)
        return False
    return True
