from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from accounts.management.project_options import add_project_arguments, project_from_options
from llmops.errors import ValidationFailed
from runs.models import Run
from runs.wandb_export import runs_export_wandb


class Command(BaseCommand):
    help = "Exports finished runs to Weights & Biases as one table (needs WANDB_PROJECT)."

    def add_arguments(self, parser: CommandParser) -> None:
        add_project_arguments(parser, required=False, what="the runs exported (default: every project's)")
        parser.add_argument("--since", help="Only runs created at or after this ISO 8601 time.")
        parser.add_argument("--batch", help="Only the runs of this batch id.")
        parser.add_argument("--name", default="", help="Name of the W&B run.")

    def handle(self, *args: Any, since: str | None, batch: str | None, name: str, **options: Any) -> None:
        runs = Run.objects.all()
        if options.get("project") or options.get("owner"):
            project, _ = project_from_options(options)
            runs = runs.filter(project=project)
        if since:
            moment = parse_datetime(since)
            if moment is None:
                raise CommandError(f"--since {since!r} is not an ISO 8601 date-time.")
            runs = runs.filter(created_at__gte=moment)
        if batch:
            runs = runs.filter(batch_item__batch_id=batch)
        try:
            result = runs_export_wandb(runs=runs, name=name)
        except ValidationFailed as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            f"Exported {result['exported']} runs ({result['succeeded']} succeeded, {result['failed']} failed) "
            f"to W&B; files in {result['directory']}."
        )
