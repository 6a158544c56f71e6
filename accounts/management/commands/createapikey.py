from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import services


class Command(BaseCommand):
    help = "Creates an API key for a user and prints it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="A label for the key.")

    def handle(self, *args: Any, username: str, name: str, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        api_key, plaintext = services.api_key_create(user=user, name=name)  # type: ignore[arg-type]
        self.stderr.write(f"Created key {api_key.prefix} ({name}) for {username}. It will not be shown again.")
        self.stdout.write(plaintext)
