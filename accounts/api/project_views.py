"""Projects and their members: create, list, change, delete; add, change the role of and remove members.

These views name their project in the URL, not in `X-Project`, so they are not project-scoped
(accounts.permissions): each resolves the project itself. A session user sees the projects they are a
member of, a key only its own project; any other is a 404 `project_not_found`, never a hint that it
exists. The services check the caller's role there.
"""

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import project_services, selectors, services
from accounts.api.project_serializers import (
    MemberAddSerializer,
    MemberRoleSerializer,
    MemberSerializer,
    ProjectCreateSerializer,
    ProjectSerializer,
    ProjectUpdateSerializer,
)
from accounts.models import APIKey, Project, Role, Scope, User
from llmops.errors import NotFound
from llmops.schema import ErrorSerializer

PROJECT_REF = OpenApiParameter("ref", OpenApiTypes.STR, OpenApiParameter.PATH, description="The project's slug or id.")
MEMBER_USER = OpenApiParameter("user", OpenApiTypes.STR, OpenApiParameter.PATH, description="The member's username.")
NO_PROJECT = OpenApiResponse(
    ErrorSerializer,
    description="`project_not_found`: no such project, or one you are not a member of (for an API key: not its own).",
)
NO_MEMBER = OpenApiResponse(
    ErrorSerializer,
    description="`project_not_found`, as above; or `not_found`: the user is not a member of the project.",
)


def _denied(needs: str) -> OpenApiResponse:
    return OpenApiResponse(
        ErrorSerializer,
        description=f"`insufficient_role`: {needs}; `insufficient_scope`: the API key lacks {Scope.KEYS_MANAGE.value}.",
    )


LAST_OWNER = OpenApiResponse(ErrorSerializer, description="`last_owner`: the project would be left without an owner.")


def _acting_key(request: Request) -> APIKey | None:
    return request.auth if isinstance(request.auth, APIKey) else None


def _project_and_role(request: Request, ref: str) -> tuple[Project, str]:
    """The project `ref` (slug or id) names and the caller's role there; 404 for one they may not use,
    the same answer as for one that does not exist."""
    project = selectors.project_by_ref(ref)
    api_key = _acting_key(request)
    if api_key is not None:
        if project is not None and project.pk == api_key.project_id:
            # member_role: set when the key authenticated (accounts.services.api_key_authenticate).
            return project, api_key.member_role  # type: ignore[attr-defined]
    elif project is not None:
        role = services.member_role(project=project, user=request.user)  # type: ignore[arg-type]
        if role is not None:
            return project, role
    raise NotFound("No such project.", code="project_not_found")


def _with_role(project: Project, role: str) -> Project:
    project.role = role  # type: ignore[attr-defined]
    return project


def _projects_of(user: User) -> QuerySet[Project]:
    """The user's projects, each with their `role` in it (one query)."""
    return selectors.project_list(user=user)


@extend_schema_view(
    list=extend_schema(
        summary="List your projects, with your role in each",
        description="An API key sees only its own project.",
    ),
    create=extend_schema(
        summary="Create a team project (you become its owner)",
        description="Signed-in users only: an API key acts inside its own project and cannot create one.",
        request=ProjectCreateSerializer,
        examples=[
            OpenApiExample("Slug from the name", request_only=True, value={"name": "Acme support"}),
            OpenApiExample("Own slug", request_only=True, value={"name": "Acme support", "slug": "acme"}),
        ],
        responses={
            201: ProjectSerializer,
            403: OpenApiResponse(
                ErrorSerializer,
                description="`permission_denied`: API keys cannot create projects; `insufficient_scope`: the API key "
                f"lacks {Scope.KEYS_MANAGE.value}.",
            ),
            409: OpenApiResponse(ErrorSerializer, description="`slug_taken`: a project has this slug."),
        },
    ),
    retrieve=extend_schema(
        summary="Get a project by slug or id",
        parameters=[PROJECT_REF],
        responses={200: ProjectSerializer, 404: NO_PROJECT},
    ),
    partial_update=extend_schema(
        summary="Change a project's name, slug or protected labels",
        description="Needs the admin role; changing the slug needs the owner role.",
        request=ProjectUpdateSerializer,
        parameters=[PROJECT_REF],
        examples=[
            OpenApiExample("Rename", request_only=True, value={"name": "Acme customer support"}),
            OpenApiExample(
                "Protect production and staging",
                request_only=True,
                value={"protected_labels": ["production", "staging"]},
            ),
        ],
        responses={
            200: ProjectSerializer,
            403: _denied("changing the project needs admin, its slug owner"),
            404: NO_PROJECT,
            409: OpenApiResponse(ErrorSerializer, description="`slug_taken`: another project has this slug."),
        },
    ),
    destroy=extend_schema(
        summary="Delete a project and everything it owns",
        description="Needs the owner role. A personal project cannot be deleted.",
        parameters=[PROJECT_REF],
        responses={
            204: None,
            403: _denied("deleting the project needs owner"),
            404: NO_PROJECT,
            409: OpenApiResponse(ErrorSerializer, description="`personal_project`: a personal project stays."),
        },
    ),
)
@extend_schema(tags=["projects"])
class ProjectViewSet(viewsets.GenericViewSet):
    serializer_class = ProjectSerializer
    project_scoped = False  # the project is the one in the URL
    lookup_field = "ref"
    lookup_value_regex = "[^/]+"
    required_scopes = {
        "list": Scope.PROMPTS_READ,
        "retrieve": Scope.PROMPTS_READ,
        "create": Scope.KEYS_MANAGE,
        "partial_update": Scope.KEYS_MANAGE,
        "destroy": Scope.KEYS_MANAGE,
    }

    def list(self, request: Request) -> Response:
        api_key = _acting_key(request)
        if api_key is not None:
            projects = _projects_of(api_key.created_by).filter(pk=api_key.project_id)
        else:
            projects = _projects_of(request.user)  # type: ignore[arg-type]
        page = self.paginate_queryset(projects)
        return self.get_paginated_response(ProjectSerializer(page, many=True).data)

    def create(self, request: Request) -> Response:
        if _acting_key(request) is not None:
            raise exceptions.PermissionDenied(
                "API keys act only inside their own project and cannot create projects; "
                "create it signed in, or with `manage.py createproject`."
            )
        serializer = ProjectCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = project_services.project_create(created_by=request.user, **serializer.validated_data)  # type: ignore[arg-type]
        return Response(ProjectSerializer(_with_role(project, Role.OWNER)).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request: Request, ref: str) -> Response:
        project, role = _project_and_role(request, ref)
        return Response(ProjectSerializer(_with_role(project, role)).data)

    def partial_update(self, request: Request, ref: str) -> Response:
        project, role = _project_and_role(request, ref)  # 404 before validation
        serializer = ProjectUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = project_services.project_update(project=project, role=role, **serializer.validated_data)
        return Response(ProjectSerializer(_with_role(project, role)).data)

    def destroy(self, request: Request, ref: str) -> Response:
        project, role = _project_and_role(request, ref)
        project_services.project_delete(project=project, role=role)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(
        summary="List a project's members and their roles",
        responses={200: MemberSerializer(many=True), 404: NO_PROJECT},
    ),
    create=extend_schema(
        summary="Add a user to a project with a role",
        description="Needs the admin role; adding an owner needs the owner role.",
        request=MemberAddSerializer,
        examples=[
            OpenApiExample("By username", request_only=True, value={"user": "bob", "role": "editor"}),
            OpenApiExample("By email", request_only=True, value={"user": "carol@example.com", "role": "viewer"}),
        ],
        responses={
            201: MemberSerializer,
            403: _denied("adding members needs admin, adding an owner owner"),
            404: NO_PROJECT,
            409: OpenApiResponse(ErrorSerializer, description="`conflict`: the user is a member already."),
        },
    ),
    partial_update=extend_schema(
        summary="Change a member's role",
        description="Needs the admin role; making, demoting or changing an owner needs the owner role.",
        request=MemberRoleSerializer,
        parameters=[MEMBER_USER],
        examples=[OpenApiExample("Make an admin", request_only=True, value={"role": "admin"})],
        responses={
            200: MemberSerializer,
            403: _denied("changing roles needs admin, an owner's or to owner needs owner"),
            404: NO_MEMBER,
            409: LAST_OWNER,
        },
    ),
    destroy=extend_schema(
        summary="Remove a member (their API keys in the project are revoked)",
        description="Needs the admin role; removing an owner needs the owner role.",
        parameters=[MEMBER_USER],
        responses={
            204: None,
            403: _denied("removing members needs admin, removing an owner owner"),
            404: NO_MEMBER,
            409: LAST_OWNER,
        },
    ),
)
@extend_schema(tags=["projects"], parameters=[PROJECT_REF])
class ProjectMemberViewSet(viewsets.GenericViewSet):
    serializer_class = MemberSerializer
    project_scoped = False  # the project is the one in the URL
    required_scopes = {
        "list": Scope.PROMPTS_READ,
        "create": Scope.KEYS_MANAGE,
        "partial_update": Scope.KEYS_MANAGE,
        "destroy": Scope.KEYS_MANAGE,
    }

    @staticmethod
    def _member_user(project: Project, username: str) -> User:
        user = User.objects.filter(username=username).first()
        if user is None:  # the service's answer for a non-member: nothing tells whether the account exists
            raise NotFound(f"{username} is not a member of this project.")
        return user

    def list(self, request: Request, ref: str) -> Response:
        project, _ = _project_and_role(request, ref)
        page = self.paginate_queryset(selectors.member_list(project=project))
        return self.get_paginated_response(MemberSerializer(page, many=True).data)

    def create(self, request: Request, ref: str) -> Response:
        project, role = _project_and_role(request, ref)
        # The service checks this too; checked first here so that a member who may not add anyone
        # cannot learn from the 400 which usernames and emails have accounts.
        services.role_check(role=role, minimum=Role.ADMIN, action="adding members")
        serializer = MemberAddSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = project_services.member_add(
            project=project,
            user=serializer.validated_data["user"],
            role=serializer.validated_data["role"],
            acting_role=role,
        )
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, ref: str, user: str) -> Response:
        project, role = _project_and_role(request, ref)
        member = self._member_user(project, user)  # 404 before validation
        serializer = MemberRoleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if "role" not in serializer.validated_data:  # PATCH {} changes nothing
            membership = selectors.member_list(project=project).filter(user=member).first()
            if membership is None:
                raise NotFound(f"{user} is not a member of this project.")
        else:
            membership = project_services.member_set_role(
                project=project, user=member, role=serializer.validated_data["role"], acting_role=role
            )
        return Response(MemberSerializer(membership).data)

    def destroy(self, request: Request, ref: str, user: str) -> Response:
        project, role = _project_and_role(request, ref)
        project_services.member_remove(project=project, user=self._member_user(project, user), acting_role=role)
        return Response(status=status.HTTP_204_NO_CONTENT)
