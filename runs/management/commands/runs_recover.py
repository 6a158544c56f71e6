from typing import Any

from django.core.management.base import BaseCommand

from runs.recovery import recover_once


class Command(BaseCommand):
    help = (
        "One recovery pass, as every worker makes each RUN_RECOVER_INTERVAL_S: sends queued runs whose message "
        "the broker never got or lost, queues again runs whose worker died, re-dispatches stalled batches and "
        "re-sends pending webhook deliveries."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        counts = recover_once()
        self.stdout.write(
            f"Sent {counts['sent']} unsent and {counts['resent']} lost run message(s); queued again "
            f"{counts['requeued']} run(s) whose worker died, failed {counts['failed']} out of attempts; "
            f"re-dispatched {counts['batches']} batch(es); re-sent {counts['webhooks']} webhook delivery(ies)."
        )
