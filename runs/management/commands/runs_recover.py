from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from runs import services


class Command(BaseCommand):
    help = "Re-enqueues runs queued too long without a worker and fails runs stuck in running."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queued-after",
            type=int,
            default=settings.RUN_RECOVER_QUEUED_AFTER_S,
            help="Seconds a queued run may wait before it is enqueued again.",
        )
        parser.add_argument(
            "--running-after",
            type=int,
            default=settings.RUN_TIME_LIMIT_S + 60,
            help="Seconds a running run may take before it is failed as lost.",
        )

    def handle(self, *args: Any, queued_after: int, running_after: int, **options: Any) -> None:
        counts = services.runs_recover(
            queued_for=timedelta(seconds=queued_after), running_for=timedelta(seconds=running_after)
        )
        self.stdout.write(f"Re-enqueued {counts['requeued']} queued run(s); failed {counts['failed']} lost run(s).")
