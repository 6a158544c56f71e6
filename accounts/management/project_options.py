"""The project a management command acts in: `--project SLUG` (or id), or `--owner USERNAME` for that
user's personal project (the one flag of the commands from before projects, kept as it was).

With `--owner`, rows record that user as their creator; with `--project`, no one (the operator)."""

from django.core.management.base import CommandError, CommandParser

from accounts import selectors
from accounts.models import Project, User


def add_project_arguments(parser: CommandParser, *, required: bool = True, what: str = "the prompts") -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--project", metavar="SLUG", help=f"The project of {what} (its slug or id).")
    group.add_argument("--owner", metavar="USERNAME", help=f"Shorthand: that user's personal project holds {what}.")


def project_from_options(options: dict) -> tuple[Project, User | None]:
    """The project the options name, and the user to record as creator; CommandError when unknown."""
    if options.get("owner"):
        user = User.objects.filter(username=options["owner"]).first()
        if user is None:
            raise CommandError(f"No user named {options['owner']!r}.")
        return user.personal_project, user
    project = selectors.project_by_ref(options["project"])
    if project is None:
        raise CommandError(f"No project {options['project']!r}.")
    return project, None
