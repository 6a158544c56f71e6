"""`manage.py prompts_export DIR --project SLUG|--owner USERNAME`: one YAML file per prompt, for keeping
prompts in Git."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.management.project_options import add_project_arguments, project_from_options
from prompts import files


class Command(BaseCommand):
    help = "Writes DIR/<name>.yaml for each prompt of a project: description, every version and the labels."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", type=Path, help="Where to write the files (created if missing).")
        add_project_arguments(parser, what="the prompts exported")
        parser.add_argument("--include-archived", action="store_true", help="Also export archived prompts.")

    def handle(self, *args: Any, directory: Path, include_archived: bool, **options: Any) -> None:
        project, _ = project_from_options(options)
        written = files.prompts_export(project=project, directory=directory, include_archived=include_archived)
        for path in written:
            self.stdout.write(str(path))
        archived = "archived prompts included" if include_archived else "archived prompts left out"
        self.stdout.write(f"Exported {len(written)} prompt(s) of {project} to {directory} ({archived}).")
