"""`manage.py prompts_export DIR --owner USERNAME`: one YAML file per prompt, for keeping prompts in Git."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from prompts import files


class Command(BaseCommand):
    help = "Writes DIR/<name>.yaml for each prompt of a user: description, every version and the labels."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", type=Path, help="Where to write the files (created if missing).")
        parser.add_argument("--owner", required=True, help="Username whose prompts are exported.")
        parser.add_argument("--include-archived", action="store_true", help="Also export archived prompts.")

    def handle(self, *args: Any, directory: Path, owner: str, include_archived: bool, **options: Any) -> None:
        user = User.objects.filter(username=owner).first()
        if user is None:
            raise CommandError(f"No user named {owner!r}.")
        written = files.prompts_export(owner=user, directory=directory, include_archived=include_archived)
        for path in written:
            self.stdout.write(str(path))
        archived = "archived prompts included" if include_archived else "archived prompts left out"
        self.stdout.write(f"Exported {len(written)} prompt(s) of {owner} to {directory} ({archived}).")
