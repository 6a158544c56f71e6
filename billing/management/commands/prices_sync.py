from typing import Any

from django.core.management.base import BaseCommand

from billing import services


class Command(BaseCommand):
    help = "Seeds model token prices from the genai-prices package (staff prices always win)."

    def handle(self, *args: Any, **options: Any) -> None:
        counts = services.prices_seed()
        self.stdout.write(
            f"Prices: {counts['created']} written, {counts['unchanged']} unchanged, "
            f"{counts['skipped']} models without token prices skipped."
        )
