"""The project a request acts in, and the member's role there.

- A key acts in its own project, with the role its creator holds there now (checked when the key
  authenticates: a creator who left the project leaves a key that no longer works).
- A session user (staff in the browser or Swagger) names the project in the `X-Project` header or
  the `project` query parameter (its slug or id); without one, their personal project.
- A project the caller is not a member of is a 404, the same as one that does not exist, so the
  answer never tells that a project exists. A key naming another project than its own gets the same.

accounts.permissions.HasScope resolves it for every project-scoped view and keeps it on the request
(`request_project`, `request_role`); views read it from there.
"""

from dataclasses import dataclass
from typing import Any

from accounts import selectors
from accounts.models import ROLE_SCOPES, APIKey, Membership, Project
from llmops.errors import NotFound

PROJECT_HEADER = "X-Project"
PROJECT_PARAM = "project"


@dataclass(frozen=True)
class ProjectAccess:
    project: Project
    role: str
    scopes: frozenset[str]  # what this request may do: the role's scopes, and for a key those it holds


def _project_ref(request: Any) -> str | None:
    ref = request.headers.get(PROJECT_HEADER, "").strip()
    if not ref:
        query = getattr(request, "query_params", None) or request.GET
        ref = (query.get(PROJECT_PARAM) or "").strip()
    return ref or None


def _matches(project: Project, ref: str) -> bool:
    return ref == project.slug or ref == str(project.pk)


def _no_project() -> NotFound:
    return NotFound("No such project.", code="project_not_found")


def access_resolve(request: Any) -> ProjectAccess:
    """The request's project, role and scopes; NotFound when it names a project it may not use."""
    cached: ProjectAccess | None = getattr(request, "_project_access", None)
    if cached is not None:
        return cached
    ref = _project_ref(request)
    api_key = request.auth if isinstance(request.auth, APIKey) else None
    if api_key is not None:
        if ref is not None and not _matches(api_key.project, ref):
            raise _no_project()
        role = api_key.member_role  # set by accounts.services.api_key_authenticate
        held = api_key.scopes if isinstance(api_key.scopes, list) else []  # a malformed row grants nothing
        access = ProjectAccess(
            project=api_key.project, role=role, scopes=frozenset(scope for scope in held if scope in ROLE_SCOPES[role])
        )
    else:
        user = request.user
        if ref is None:
            membership = (
                Membership.objects.select_related("project").filter(user=user, project__personal_for=user).first()
            )
        else:
            membership = selectors.membership_by_ref(user=user, ref=ref)
        if membership is None:
            raise _no_project()
        access = ProjectAccess(
            project=membership.project, role=membership.role, scopes=frozenset(ROLE_SCOPES[membership.role])
        )
    request._project_access = access
    return access


def request_project(request: Any) -> Project:
    """The project of a request that HasScope let through (a project-scoped view)."""
    return access_resolve(request).project


def request_role(request: Any) -> str:
    return access_resolve(request).role
