"""`manage.py prompts_import DIR --project SLUG|--owner USERNAME [--dry-run]`: makes a project's prompts
match a directory of YAML files (see prompts/files.py). Exits non-zero if any file failed; the other files
are still imported."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.management.project_options import add_project_arguments, project_from_options
from llmops.errors import DomainError
from prompts import files


class Command(BaseCommand):
    help = (
        "Imports DIR/*.yaml and *.yml into a project's prompts: creates missing prompts, adds versions whose content "
        "is new, moves labels, updates descriptions. One transaction per file; running it again changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", type=Path, help="The directory of prompt files.")
        add_project_arguments(parser, what="the prompts made to match the files")
        parser.add_argument("--dry-run", action="store_true", help="Print what would change and write nothing.")

    def handle(self, *args: Any, directory: Path, dry_run: bool, **options: Any) -> None:
        project, user = project_from_options(options)
        try:
            report = files.prompts_import(project=project, created_by=user, directory=directory, dry_run=dry_run)
        except DomainError as exc:
            raise CommandError(exc.message) from None
        for result in report.files:
            for change in result.changes:
                self.stdout.write(f"{result.path.name}: {change}")
            if result.error is not None:
                self.stderr.write(f"{result.path.name}: {result.error.message}")
                for field, problems in result.error.fields.items():
                    for problem in problems:
                        self.stderr.write(f"{result.path.name}: {field}: {problem}")
        self.stdout.write(report.summary())
        if report.failed:
            names = ", ".join(result.path.name for result in report.failed)
            raise CommandError(f"{len(report.failed)} file(s) failed, nothing written from them: {names}.")
