"""Writes for projects and their members.

Roles include the ones below them (accounts.models.Role). Who may do what to members:
- an admin adds, changes and removes admins, editors and viewers;
- only an owner makes, changes or removes an owner;
- the last owner cannot be removed or demoted (409), so a project always has one.
Removing a member revokes the keys they made in the project, in the same transaction: a departing
member's key never outlives their membership. A demotion needs nothing of the kind: a key acts with
the scopes its creator's current role allows (accounts.access).
"""

import re
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import APIKey, Membership, Project, Role, User
from accounts.services import role_check
from llmops.errors import Conflict, NotFound, ValidationFailed

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,49}$"
_SLUG = re.compile(SLUG_PATTERN)
SLUG_HELP = "Lowercase letters, digits and hyphens, starting with a letter or digit, at most 50."
LABEL_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,49}$")


def _slug_check(slug: Any) -> str:
    if not isinstance(slug, str) or not _SLUG.fullmatch(slug):
        raise ValidationFailed("Invalid slug.", fields={"slug": [SLUG_HELP]})
    return slug


def _protected_labels_check(labels: Any) -> list[str]:
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise ValidationFailed(
            "Invalid protected labels.", fields={"protected_labels": ["Must be a list of label names."]}
        )
    bad = [label for label in labels if not LABEL_PATTERN.fullmatch(label)]
    if bad:
        raise ValidationFailed(
            "Invalid protected labels.", fields={"protected_labels": [f"Not label names: {', '.join(map(repr, bad))}."]}
        )
    return sorted(set(labels))


def _free_slug(base: str) -> str:
    """`base` (a slug), or `base-2`, `base-3`... whichever no project has yet."""
    base = (slugify(base)[:40].strip("-") or "project").lower()
    if not _SLUG.fullmatch(base):
        base = f"p-{base}"[:40]
    slug, n = base, 1
    while Project.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def personal_project_create(*, user: User) -> Project:
    """The user's personal project, with the user as its owner (made once, with the user)."""
    existing = Project.objects.filter(personal_for=user).first()
    if existing is not None:
        return existing
    project = Project.objects.create(
        name=f"{user.username}'s project", slug=_free_slug(user.username), personal_for=user
    )
    Membership.objects.create(project=project, user=user, role=Role.OWNER)
    return project


@transaction.atomic
def project_create(*, name: str, created_by: User, slug: str | None = None) -> Project:
    """A team project with `created_by` as its project. `slug` defaults to one made from the name."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationFailed("A project needs a name.", fields={"name": ["Required."]})
    slug = _slug_check(slug) if slug is not None else _free_slug(name)
    try:
        with transaction.atomic():
            project = Project.objects.create(name=name.strip(), slug=slug)
    except IntegrityError:
        raise Conflict(
            f"A project with the slug {slug!r} exists.", fields={"slug": ["Taken."]}, code="slug_taken"
        ) from None
    Membership.objects.create(project=project, user=created_by, role=Role.OWNER)
    return project


def project_update(*, project: Project, role: str | None, **fields: Any) -> Project:
    """Changes `name`, `slug` or `protected_labels` (admin; the slug, owner only)."""
    role_check(role=role, minimum=Role.ADMIN, action="changing the project")
    changed = []
    if "name" in fields:
        if not isinstance(fields["name"], str) or not fields["name"].strip():
            raise ValidationFailed("A project needs a name.", fields={"name": ["Required."]})
        project.name = fields["name"].strip()
        changed.append("name")
    if "slug" in fields:
        role_check(role=role, minimum=Role.OWNER, action="changing the slug")
        project.slug = _slug_check(fields["slug"])
        changed.append("slug")
    if "protected_labels" in fields:
        project.protected_labels = _protected_labels_check(fields["protected_labels"])
        changed.append("protected_labels")
    if changed:
        try:
            with transaction.atomic():
                project.save(update_fields=[*changed, "updated_at"])
        except IntegrityError:
            raise Conflict(
                f"A project with the slug {project.slug!r} exists.", fields={"slug": ["Taken."]}, code="slug_taken"
            ) from None
    return project


def project_delete(*, project: Project, role: str | None) -> None:
    """Deletes the project and everything it owns (project only). A personal project stays: 409."""
    role_check(role=role, minimum=Role.OWNER, action="deleting the project")
    if project.personal_for_id is not None:
        raise Conflict("A personal project cannot be deleted.", code="personal_project")
    project.delete()


def _member(project: Project, user: User, *, lock: bool = False) -> Membership:
    memberships = Membership.objects.select_for_update() if lock else Membership.objects
    membership = memberships.filter(project=project, user=user).first()
    if membership is None:
        raise NotFound(f"{user.username} is not a member of this project.")
    return membership


def _owners_left_after(project: Project, leaving: Membership) -> int:
    # Locking every owner row serializes concurrent demotions, so two cannot each leave the other.
    owners = list(
        Membership.objects.select_for_update().filter(project=project, role=Role.OWNER).values_list("pk", flat=True)
    )
    return len([pk for pk in owners if pk != leaving.pk])


@transaction.atomic
def member_add(*, project: Project, user: User, role: str, acting_role: str | None) -> Membership:
    role = _role_check(role)
    role_check(role=acting_role, minimum=Role.ADMIN, action="adding members")
    if role == Role.OWNER:
        role_check(role=acting_role, minimum=Role.OWNER, action="adding an owner")
    try:
        with transaction.atomic():
            return Membership.objects.create(project=project, user=user, role=role)
    except IntegrityError:
        raise Conflict(f"{user.username} is already a member.", fields={"user": ["Already a member."]}) from None


@transaction.atomic
def member_set_role(*, project: Project, user: User, role: str, acting_role: str | None) -> Membership:
    role = _role_check(role)
    role_check(role=acting_role, minimum=Role.ADMIN, action="changing roles")
    membership = _member(project, user, lock=True)
    if Role.OWNER in (role, membership.role):
        role_check(role=acting_role, minimum=Role.OWNER, action="changing an owner's role or making an owner")
    if membership.role == Role.OWNER and role != Role.OWNER and _owners_left_after(project, membership) == 0:
        raise Conflict("The project's last owner cannot be demoted; make another owner first.", code="last_owner")
    if membership.role != role:
        membership.role = role
        membership.save(update_fields=["role", "updated_at"])
    return membership


@transaction.atomic
def member_remove(*, project: Project, user: User, acting_role: str | None) -> int:
    """Removes the member and revokes the keys they made in the project; returns how many it revoked."""
    role_check(role=acting_role, minimum=Role.ADMIN, action="removing members")
    membership = _member(project, user, lock=True)
    if membership.role == Role.OWNER:
        role_check(role=acting_role, minimum=Role.OWNER, action="removing an owner")
        if _owners_left_after(project, membership) == 0:
            raise Conflict("The project's last owner cannot be removed; make another owner first.", code="last_owner")
    membership.delete()  # its signal invalidates the config cache on commit, these keys' rows with it
    return APIKey.objects.filter(project=project, created_by=user, is_active=True).update(
        is_active=False, revoked_at=timezone.now(), updated_at=timezone.now()
    )


def _role_check(role: Any) -> str:
    if role not in Role.values:
        raise ValidationFailed("Invalid role.", fields={"role": [f"One of: {', '.join(Role.values)}."]})
    return str(role)
