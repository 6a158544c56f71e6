"""`manage.py project_member add|remove|role PROJECT USER [--role ROLE]`: staff tooling for a project's
members. PROJECT is a slug or id, USER a username or email. It acts as staff (no role of its own), so
only the services' other rules apply: a project keeps its last owner, a user is a member once."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import project_services, selectors
from accounts.management.commands.createproject import domain_error_text
from accounts.models import Role, User
from llmops.errors import DomainError


def _user(ref: str) -> User:
    try:
        return selectors.user_by_name_or_email(ref)
    except selectors.UserNotFound as exc:
        raise CommandError(f"{ref!r}: {exc}") from None


class Command(BaseCommand):
    help = "Adds a member to a project, changes a member's role, or removes a member (revoking their keys)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["add", "remove", "role"])
        parser.add_argument("project", help="The project's slug or id.")
        parser.add_argument("user", help="The user's username or email.")
        parser.add_argument("--role", choices=Role.values, default=None, help="The role (for add and role).")

    def handle(self, *args: Any, action: str, project: str, user: str, role: str | None, **options: Any) -> None:
        target = selectors.project_by_ref(project)
        if target is None:
            raise CommandError(f"No project {project!r}.")
        member = _user(user)
        if action in ("add", "role") and role is None:
            raise CommandError(f"--role is required for {action}: one of {', '.join(Role.values)}.")
        try:
            if action == "add":
                assert role is not None
                project_services.member_add(project=target, user=member, role=role, acting_role=None)
                self.stdout.write(f"Added {member.username} to {target.slug} as {role}.")
            elif action == "role":
                assert role is not None
                project_services.member_set_role(project=target, user=member, role=role, acting_role=None)
                self.stdout.write(f"{member.username} is now {role} in {target.slug}.")
            else:
                revoked = project_services.member_remove(project=target, user=member, acting_role=None)
                self.stdout.write(f"Removed {member.username} from {target.slug}; revoked {revoked} API key(s).")
        except DomainError as exc:
            raise CommandError(domain_error_text(exc)) from None
