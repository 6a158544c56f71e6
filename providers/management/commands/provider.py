"""`manage.py provider set|list`: configure the LLM providers runs are sent to.

    provider set NAME --kind openai-compatible --base-url http://127.0.0.1:8000/v1 [--api-key-env VAR]
                      [--timeout S] [--enable | --disable]
    provider list

Keys are never given here: `--api-key-env` names the environment variable that holds the key.
"""

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from llmops.errors import ValidationFailed
from providers.models import Provider
from providers.services import provider_set


class Command(BaseCommand):
    help = "Creates, updates or lists LLM providers."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        set_ = sub.add_parser("set", help="Create a provider, or update the fields given.")
        set_.add_argument("name")
        set_.add_argument("--kind", choices=Provider.Kind.values, help="Required when creating.")
        set_.add_argument("--base-url", help="Required for openai-compatible, e.g. http://127.0.0.1:8011/v1.")
        set_.add_argument(
            "--api-key-env",
            help="Name of the environment variable holding the API key (not the key itself); '' to clear.",
        )
        set_.add_argument("--timeout", type=float, help="Seconds per request.")
        state = set_.add_mutually_exclusive_group()
        state.add_argument("--enable", dest="enabled", action="store_true", default=None)
        state.add_argument("--disable", dest="enabled", action="store_false")
        sub.add_parser("list", help="List providers.")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "list":
            self._list()
            return
        try:
            provider, created = provider_set(
                name=options["name"],
                kind=options["kind"],
                base_url=options["base_url"],
                api_key_env=options["api_key_env"],
                timeout=options["timeout"],
                enabled=options["enabled"],
            )
        except ValidationFailed as exc:
            problems = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.fields.items())
            raise CommandError(f"{exc.message} {problems}".strip()) from None
        self.stdout.write(self.style.SUCCESS(f"{'Created' if created else 'Updated'} provider '{provider.name}'."))
        self.stdout.write(_describe(provider))

    def _list(self) -> None:
        providers = list(Provider.objects.order_by("name"))
        if not providers:
            self.stdout.write("No providers. Add one with `manage.py provider set NAME --kind ...`.")
            return
        for provider in providers:
            self.stdout.write(_describe(provider))


def _describe(provider: Provider) -> str:
    # Only the variable's name and whether it is set: the key itself is never printed.
    if provider.api_key_env:
        key = f"key from ${provider.api_key_env} ({'set' if os.environ.get(provider.api_key_env) else 'NOT set'})"
    else:
        key = "no key"
    return (
        f"{provider.name}  {provider.kind}  {provider.base_url or '(default endpoint)'}  {key}  "
        f"timeout {provider.timeout:g}s  {'enabled' if provider.enabled else 'disabled'}"
    )
