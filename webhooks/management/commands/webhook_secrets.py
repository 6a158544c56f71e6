"""`manage.py webhook_secrets reencrypt|generate-key|derived-key`: the keys of webhook signing secrets.

    webhook_secrets generate-key   a new Fernet key, for FIELD_ENCRYPTION_KEYS
    webhook_secrets derived-key    the key derived from the current SECRET_KEY (used while
                                   FIELD_ENCRYPTION_KEYS is unset): list it there before changing SECRET_KEY
    webhook_secrets reencrypt      encrypt every secret again with the first key (key rotation)

Keys go to stdout only, like createapikey's keys; secrets are never printed.
"""

from typing import Any

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from webhooks import secrets


class Command(BaseCommand):
    help = "Rotates the keys that encrypt webhook signing secrets (README, Webhooks)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("reencrypt", help="Encrypt every signing secret again with the first FIELD_ENCRYPTION_KEYS key.")
        sub.add_parser("generate-key", help="Print a new Fernet key.")
        sub.add_parser("derived-key", help="Print the key derived from SECRET_KEY (the default key).")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "generate-key":
            self.stdout.write(Fernet.generate_key().decode())
            return
        if action == "derived-key":
            self.stdout.write(secrets.derived_encryption_key(settings.SECRET_KEY))
            return
        try:
            written, undecryptable = secrets.webhook_secrets_reencrypt()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Re-encrypted the signing secrets of {written} webhook endpoint(s) with the first key.")
        if undecryptable:
            ids = ", ".join(str(pk) for pk in undecryptable)
            # Not a success: dropping a key now would lose these for good.
            raise CommandError(
                f"{len(undecryptable)} endpoint secret(s) decrypt with none of the keys and were left as they are: "
                f"{ids}. Add the key that encrypted them and run this again, or register those endpoints anew."
            )
