"""Dramatiq actors of the accounts app. They take ids only and delegate to accounts.webhooks."""

import dramatiq

from accounts import webhooks


# Dramatiq's own retries are off: webhooks.webhook_deliver retries by re-enqueueing itself with a
# delay, so every attempt is counted and recorded on the delivery row.
@dramatiq.actor(
    queue_name="webhooks",
    max_retries=0,
    time_limit=int(webhooks.attempt_time_limit().total_seconds() * 1000),
)
def deliver_webhook(delivery_id: str) -> None:
    webhooks.webhook_deliver(delivery_id=delivery_id)
