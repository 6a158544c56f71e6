"""`manage.py createproject NAME --owner USERNAME [--slug SLUG]`: a team project with USERNAME as its
owner; prints its slug."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import project_services
from accounts.models import User
from llmops.errors import DomainError


def domain_error_text(exc: DomainError) -> str:
    """The service's message, and the problem with each field it names."""
    problems = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.fields.items())
    return f"{exc.message} ({problems})" if problems else exc.message


class Command(BaseCommand):
    help = "Creates a team project owned by a user and prints its slug."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="The project's name.")
        parser.add_argument("--owner", required=True, metavar="USERNAME", help="The user who becomes its owner.")
        parser.add_argument("--slug", default=None, help="Its slug (default: made from the name).")

    def handle(self, *args: Any, name: str, owner: str, slug: str | None, **options: Any) -> None:
        user = User.objects.filter(username=owner).first()
        if user is None:
            raise CommandError(f"No user named {owner!r}.")
        try:
            project = project_services.project_create(name=name, created_by=user, slug=slug)
        except DomainError as exc:
            raise CommandError(domain_error_text(exc)) from None
        self.stderr.write(f"Created project {project.name!r} owned by {owner}.")
        self.stdout.write(project.slug)
