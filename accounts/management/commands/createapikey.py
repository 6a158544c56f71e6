"""`manage.py createapikey USER [--project SLUG] [--name NAME] [--scopes a,b]`: a key made by USER for a
project (default: USER's personal project), printed once. USER must be an admin or owner there."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import selectors, services
from accounts.models import User, all_scopes
from llmops.errors import DomainError


class Command(BaseCommand):
    help = "Creates an API key made by a user for a project (default: the user's personal project) and prints it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="The member who makes the key (admin or owner of the project).")
        parser.add_argument(
            "--project", metavar="SLUG", help="The project's slug or id (default: USER's personal one)."
        )
        parser.add_argument("--name", default="cli", help="A label for the key.")
        parser.add_argument(
            "--scopes",
            default=None,
            help=f"Comma-separated scopes to grant (default: all): {','.join(all_scopes())}.",
        )

    def handle(
        self, *args: Any, username: str, project: str | None, name: str, scopes: str | None, **options: Any
    ) -> None:
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        target = user.personal_project if project is None else selectors.project_by_ref(project)
        if target is None:
            raise CommandError(f"No project {project!r}.")
        requested = None if scopes is None else [scope.strip() for scope in scopes.split(",") if scope.strip()]
        try:
            api_key, plaintext = services.api_key_create(project=target, created_by=user, name=name, scopes=requested)
        except DomainError as exc:
            raise CommandError(exc.message) from None
        self.stderr.write(
            f"Created key {api_key.prefix} ({name}) of project {target.slug}, made by {username}, with scopes "
            f"{','.join(api_key.scopes)}. It will not be shown again."
        )
        self.stdout.write(plaintext)
