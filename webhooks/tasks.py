"""Dramatiq actors of the webhooks app. They take ids only and delegate to webhooks.services."""

import dramatiq

from webhooks import services


# Dramatiq's own retries are off: services.webhook_deliver retries by re-enqueueing itself with a
# delay, so every attempt is counted and recorded on the delivery row.
@dramatiq.actor(
    queue_name="webhooks",
    max_retries=0,
    time_limit=int(services.attempt_time_limit().total_seconds() * 1000),
)
def deliver_webhook(delivery_id: str) -> None:
    services.webhook_deliver(delivery_id=delivery_id)
