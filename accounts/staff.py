"""The role a staff user acts with in the admin, where the project's role rules apply as in the API."""

from accounts.models import Project, User
from accounts.services import InsufficientRole, member_role, role_check


def staff_role(*, user: User, project: Project) -> str | None:
    """None for a superuser (staff tooling, which may do anything: accounts.services.role_check);
    otherwise the user's role in `project`. A staff user who is not a member is refused."""
    if user.is_superuser:
        return None
    role = member_role(project=project, user=user)
    if role is None:
        raise InsufficientRole(f"You are not a member of the project {project.slug!r}, so you cannot change it here.")
    return role


def staff_role_check(*, user: User, project: Project, minimum: str, action: str) -> str | None:
    """`staff_role`, refused (InsufficientRole) unless at least `minimum`, as the API would."""
    role = staff_role(user=user, project=project)
    role_check(role=role, minimum=minimum, action=action)
    return role
