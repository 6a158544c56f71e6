from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import services
from accounts.models import all_scopes
from llmops.errors import ValidationFailed


class Command(BaseCommand):
    help = "Creates an API key for a user and prints it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="A label for the key.")
        parser.add_argument(
            "--scopes",
            default=None,
            help=f"Comma-separated scopes to grant (default: all): {','.join(all_scopes())}.",
        )

    def handle(self, *args: Any, username: str, name: str, scopes: str | None, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        requested = None if scopes is None else [scope.strip() for scope in scopes.split(",") if scope.strip()]
        try:
            api_key, plaintext = services.api_key_create(user=user, name=name, scopes=requested)  # type: ignore[arg-type]
        except ValidationFailed as exc:
            raise CommandError(exc.message) from None
        self.stderr.write(
            f"Created key {api_key.prefix} ({name}) for {username} with scopes {','.join(api_key.scopes)}. "
            "It will not be shown again."
        )
        self.stdout.write(plaintext)
