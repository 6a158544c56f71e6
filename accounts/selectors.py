"""Reads for users, projects, members and API keys."""

import uuid
from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery

from accounts.models import APIKey, Membership, Project, User


def api_key_list(*, project: Project) -> QuerySet[APIKey]:
    return APIKey.objects.filter(project=project).select_related("created_by").order_by("-created_at")


def project_list(*, user: User) -> QuerySet[Project]:
    """The projects `user` is a member of, each with the user's `role` in it (one query)."""
    role = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    return Project.objects.filter(memberships__user=user).annotate(role=Subquery(role)).order_by("slug")


class UserNotFound(Exception):
    """No user, or more than one, answers to the name; the message says which."""


def user_by_name_or_email(ref: str) -> User:
    """The user whose username is `ref`, else the one user with that email; UserNotFound otherwise."""
    user = User.objects.filter(username=ref).first()
    if user is not None:
        return user
    matches = list(User.objects.filter(email__iexact=ref)[:2])
    if not matches:
        raise UserNotFound("No user has this username or email.")
    if len(matches) > 1:
        raise UserNotFound("Several users have this email; give the username.")
    return matches[0]


def member_list(*, project: Project) -> QuerySet[Membership]:
    return Membership.objects.filter(project=project).select_related("user").order_by("created_at")


def _project_lookup(ref: str) -> dict[str, Any]:
    """The filter a project reference means: its id when `ref` parses as a UUID, else its slug."""
    try:
        return {"pk": uuid.UUID(ref)}
    except ValueError:
        return {"slug": ref}


def project_by_ref(ref: str) -> Project | None:
    """The project whose slug or id is `ref` (for staff tooling: no membership check)."""
    return Project.objects.filter(**_project_lookup(ref)).first()


def membership_by_ref(*, user: User, ref: str) -> Membership | None:
    """`user`'s membership of the project whose slug or id is `ref`, with the project; None for a non-member."""
    lookup = {f"project__{name}": value for name, value in _project_lookup(ref).items()}
    return Membership.objects.select_related("project").filter(user=user, **lookup).first()
