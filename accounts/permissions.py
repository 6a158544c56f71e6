"""Key scopes: each API view declares the scope every action needs, and a key must hold it.

A view sets `required_scopes`, mapping a viewset's action name (`list`, `retrieve`, `create`,
`partial_update`, `destroy`, an `@action`'s name) or, for a plain APIView, the lowercase HTTP method
(`get`, `post`) to a `Scope` value:

    required_scopes = {"list": Scope.PROMPTS_READ, "create": Scope.PROMPTS_WRITE}

Every view is project-scoped unless it sets `project_scoped = False`: the request acts in one project
(accounts.access), and may use the scopes its member's role allows there (accounts.models.ROLE_SCOPES),
a key only those of them it holds. A session user (staff in the browser or Swagger) acts with all of
their role's scopes. A request to an action that declares no scope is refused: forgetting the
declaration fails closed.
"""

from http import HTTPStatus
from typing import Any

from rest_framework import exceptions, permissions

from accounts import services
from accounts.access import access_resolve
from accounts.models import APIKey


class InsufficientScope(services.InsufficientScope, exceptions.PermissionDenied):
    """403 `insufficient_scope` in the API's error shape (a DomainError keeps this code, where the
    handler would call any DRF 403 `permission_denied`); also a PermissionDenied, so DRF's own
    permission probes (browsable API forms, OPTIONS metadata) treat it as a plain "not allowed"."""

    status_code = HTTPStatus.FORBIDDEN


class RoleDenied(services.InsufficientRole, exceptions.PermissionDenied):
    """403 `insufficient_role`: the member's role in the project does not allow the action."""

    status_code = HTTPStatus.FORBIDDEN


class HasScope(permissions.BasePermission):
    """Lets a key-authenticated request through only if its key holds the scope the action declares."""

    @staticmethod
    def required_scope(view: Any, method: str) -> str | None:
        """The scope `view` declares for `method` (its current action, for a viewset); None if none."""
        declared: dict[str, str] = getattr(view, "required_scopes", {})
        # A viewset has an action_map (method -> action). Duck-typed: importing rest_framework.viewsets
        # here would be circular, as it reads DEFAULT_PERMISSION_CLASSES, which names this module.
        if getattr(view, "action_map", None) is not None:
            action = getattr(view, "action", None)
            return declared.get(action) if action else None
        method = method.lower()
        # Django answers HEAD with the GET handler, so it needs what GET needs.
        return declared.get(method) or (declared.get("get") if method == "head" else None)

    def has_permission(self, request: Any, view: Any) -> bool:
        api_key = request.auth
        if api_key is not None and not isinstance(api_key, APIKey):
            raise exceptions.PermissionDenied("These credentials carry no scopes.")  # a future scheme: closed
        if not getattr(request.user, "is_authenticated", False):
            return True  # anonymous requests are IsAuthenticated's (or AllowAny's)
        if getattr(view, request.method.lower(), None) is None:
            return True  # no handler: DRF answers 405 and nothing runs
        scope = self.required_scope(view, request.method)
        if not getattr(view, "project_scoped", True):
            if api_key is None:
                return True  # the view checks the caller's role in the project it names
            if scope is None:
                raise exceptions.PermissionDenied("This endpoint declares no scope, so API keys may not use it.")
            if not isinstance(api_key.scopes, list) or scope not in api_key.scopes:
                raise InsufficientScope(f"This API key lacks the scope this endpoint requires: {scope}.")
            return True
        if scope is None:
            raise exceptions.PermissionDenied("This endpoint declares no scope, so it may not be used.")
        access = access_resolve(request)
        if scope in access.scopes:
            return True
        if api_key is not None and (not isinstance(api_key.scopes, list) or scope not in api_key.scopes):
            raise InsufficientScope(f"This API key lacks the scope this endpoint requires: {scope}.")
        raise RoleDenied(f"Your role in this project ({access.role}) does not allow this: it needs the scope {scope}.")
