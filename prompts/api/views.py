import hashlib
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponseNotModified
from django.utils.http import parse_etags
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.access import request_project, request_role
from accounts.models import Scope
from llmops.schema import ErrorSerializer
from prompts import selectors, services
from prompts.api.serializers import (
    LabelMoveInputSerializer,
    LabelSerializer,
    LabelsSerializer,
    PromptCreatedSerializer,
    PromptCreateSerializer,
    PromptSerializer,
    PromptUpdateSerializer,
    RenderedSerializer,
    RenderInputSerializer,
    ResolvedVersionSerializer,
    ResolveQuerySerializer,
    VersionInputSerializer,
    VersionSerializer,
)
from prompts.models import LATEST_LABEL, Prompt, PromptVersion

PROMPT_REF = OpenApiParameter(
    "ref", OpenApiTypes.STR, OpenApiParameter.PATH, description="The prompt's id or its name."
)
LABEL_HISTORY_LIMIT = 100
ARCHIVED = OpenApiResponse(ErrorSerializer, description="The prompt is archived (`prompt_archived`).")
# A resolved version may be kept by the client (`private`: it is the caller's project's, never a shared
# cache's) but never used unchecked (`no-cache`): a label can move at any time, and a revalidation that
# finds it where it was is a 304 for one query.
RESOLVE_CACHE_CONTROL = "private, no-cache"
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}

# Request examples for the interactive docs (Swagger UI would otherwise make one up from the schema,
# with both `template` and `messages` and `additionalProp1` keys). llmops/tests/test_schema.py checks
# each against its schema.
_VARIABLES = {"text": {"type": "string"}, "words": {"type": "integer", "default": 30}}
PROMPT_EXAMPLES = [
    OpenApiExample(
        "Text template",
        request_only=True,
        value={
            "name": "summarize",
            "description": "Summarizes a text.",
            "template": "Summarize in {{ words }} words:\n\n{{ text }}",
            "variables": _VARIABLES,
            "model": "local/smollm2",
            "params": {"max_tokens": 120, "temperature": 0.3},
            "commit_message": "First draft",
        },
    ),
    OpenApiExample(
        "Chat messages",
        request_only=True,
        value={
            "name": "support",
            "messages": [
                {"role": "system", "content": "You are {{ persona }}."},
                {"role": "user", "content": "{{ question }}"},
            ],
            "variables": {"persona": {"type": "string", "default": "a helpful agent"}, "question": {"type": "string"}},
            "model": "local/smollm2",
        },
    ),
]
VERSION_EXAMPLES = [
    OpenApiExample(
        "New template, the rest from the latest version",
        description="Model, variables and params are those of the latest version.",
        request_only=True,
        value={
            "template": "Summarize in at most {{ words }} words:\n\n{{ text }}",
            "commit_message": "Ask for at most N words",
        },
    ),
    OpenApiExample(
        "Based on version 1, with other params",
        request_only=True,
        value={
            "template": "Summarize in {{ words }} words:\n\n{{ text }}",
            "based_on": 1,
            "params": {"max_tokens": 200, "temperature": 0.7},
            "commit_message": "Longer and livelier",
        },
    ),
    OpenApiExample(
        "Chat messages, everything given",
        request_only=True,
        value={
            "messages": [{"role": "user", "content": "Summarize: {{ text }}"}],
            "variables": {"text": {"type": "string"}},
            "model": "local/smollm2",
            "params": {"max_tokens": 120},
        },
    ),
]


def resolve_etag(*, version_id: Any, requested: str, prompt_name: str, created_by: str | None) -> str:
    """A strong validator of a resolve response: the version (immutable) and everything else its body
    shows, the selector asked for and the two names that can change, so equal tags mean equal bodies."""
    parts = (str(version_id), requested, prompt_name, created_by or "")
    return '"{}"'.format(hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32])


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 13.1.2: `*` matches any current representation; otherwise any tag of the list, compared
    weakly (a `W/` prefix on either side is ignored)."""
    tags = parse_etags(if_none_match)
    return "*" in tags or any(tag.removeprefix("W/") == etag.removeprefix("W/") for tag in tags)


ETAG_HEADER = OpenApiParameter(
    "ETag",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=[200, 304],
    required=True,
    description=(
        "Strong validator of this response: the resolved version and what was asked for. It changes when "
        "the label moves. Send it back in `If-None-Match`."
    ),
)
CACHE_CONTROL_HEADER = OpenApiParameter(
    "Cache-Control",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=[200, 304],
    required=True,
    description=f"`{RESOLVE_CACHE_CONTROL}`: keep it, but revalidate every use (a label can move any time).",
)
IF_NONE_MATCH_HEADER = OpenApiParameter(
    "If-None-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "ETags of the copies you hold (a list, `W/` tags or `*`; weak comparison): if one is current, "
        "the answer is a 304 with no body."
    ),
)


@extend_schema_view(
    list=extend_schema(
        summary="List your prompts",
        parameters=[OpenApiParameter("include_archived", OpenApiTypes.BOOL, description="Include archived prompts.")],
    ),
    create=extend_schema(
        summary="Create a prompt with its first version",
        request=PromptCreateSerializer,
        examples=PROMPT_EXAMPLES,
        responses={
            201: PromptCreatedSerializer,
            409: OpenApiResponse(ErrorSerializer, description="You have a prompt of this name (`name_taken`)."),
        },
    ),
    retrieve=extend_schema(summary="Get a prompt by id or name", parameters=[PROMPT_REF]),
    partial_update=extend_schema(
        summary="Update a prompt's description",
        request=PromptUpdateSerializer,
        parameters=[PROMPT_REF],
        examples=[OpenApiExample("Description", request_only=True, value={"description": "Greets someone by name."})],
    ),
    destroy=extend_schema(summary="Archive a prompt (its versions stay)", parameters=[PROMPT_REF]),
)
@extend_schema(tags=["prompts"])
class PromptViewSet(viewsets.GenericViewSet):
    serializer_class = PromptSerializer
    required_scopes = {
        "list": Scope.PROMPTS_READ,
        "retrieve": Scope.PROMPTS_READ,
        "labels": Scope.PROMPTS_READ,
        "render": Scope.PROMPTS_READ,
        "resolve": Scope.PROMPTS_READ,
        "create": Scope.PROMPTS_WRITE,
        "partial_update": Scope.PROMPTS_WRITE,
        "destroy": Scope.PROMPTS_WRITE,
        "move_label": Scope.PROMPTS_WRITE,
    }
    lookup_field = "ref"
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Prompt]:
        # Strict, as the schema's boolean: `?include_archived=maybe` is a 400, not silently false.
        include_archived = _BOOLEANS.get(self.request.query_params.get("include_archived", "false").lower())
        if include_archived is None:
            raise ValidationError({"include_archived": ["Must be true or false."]})
        return selectors.prompt_list(project=request_project(self.request), include_archived=include_archived)

    def get_object(self) -> Prompt:
        return selectors.prompt_get(project=request_project(self.request), ref=self.kwargs["ref"])

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(PromptSerializer(page, many=True).data)

    def create(self, request: Request) -> Response:
        serializer = PromptCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        prompt, version = services.prompt_create(
            project=request_project(request),
            created_by=request.user,  # type: ignore[arg-type]
            **serializer.validated_data,
        )
        prompt = selectors.prompt_get(project=request_project(request), ref=str(prompt.pk))
        prompt.version = version  # type: ignore[attr-defined]
        return Response(PromptCreatedSerializer(prompt).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request: Request, ref: str) -> Response:
        return Response(PromptSerializer(self.get_object()).data)

    def partial_update(self, request: Request, ref: str) -> Response:
        prompt = self.get_object()
        serializer = PromptUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if serializer.validated_data:  # PATCH {} changes nothing
            services.prompt_update(prompt=prompt, **serializer.validated_data)
        return Response(PromptSerializer(prompt).data)

    def destroy(self, request: Request, ref: str) -> Response:
        services.prompt_archive(prompt=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Render a version with variables (no model call)",
        request=RenderInputSerializer,
        examples=[
            OpenApiExample(
                "By label",
                request_only=True,
                value={"label": "production", "variables": {"text": "Prompts are versioned.", "words": 5}},
            ),
            OpenApiExample("By version number", request_only=True, value={"version": 2, "variables": {"text": "Hi."}}),
        ],
        responses={200: RenderedSerializer},
        parameters=[PROMPT_REF],
    )
    @action(detail=True, methods=["post"])
    def render(self, request: Request, ref: str) -> Response:
        prompt = self.get_object()
        serializer = RenderInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        version = selectors.version_resolve(prompt=prompt, version=data.get("version"), label=data.get("label"))
        rendered = services.prompt_render(version=version, values=data["variables"])
        return Response({"prompt": prompt.pk, "version": version.number, **rendered})

    @extend_schema(
        summary="Get the version a label (or a number) resolves to, for clients that cache",
        description=(
            "The version `label` points at, or number `version`, or (neither, or `label=latest`) the highest; "
            "`label` and `version` exclude each other (both: a 400 naming `label`). The body is the version as "
            "`GET /versions/{number}` shows it, with the prompt's name and what was asked for. Works for "
            "archived prompts, as their versions stay. A label or version that does not exist is a 404 "
            "naming `label` or `version`.\n\nCaching: the `ETag` is strong and changes when the label moves; "
            "send it back in `If-None-Match` to get a 304 with no body while it is current."
        ),
        parameters=[PROMPT_REF, ResolveQuerySerializer, IF_NONE_MATCH_HEADER, ETAG_HEADER, CACHE_CONTROL_HEADER],
        responses={
            200: ResolvedVersionSerializer,
            304: OpenApiResponse(description="Not modified: the copy whose ETag you sent is current. No body."),
            400: OpenApiResponse(
                ErrorSerializer, description="`label` and `version` together, or malformed; `error.fields` names it."
            ),
            404: OpenApiResponse(
                ErrorSerializer,
                description=(
                    "No such prompt (or in another project), or no such `label` or `version` on it "
                    "(`error.fields` names which)."
                ),
            ),
        },
    )
    @action(detail=True, methods=["get"], url_path="resolve")
    def resolve(self, request: Request, ref: str) -> Response | HttpResponseNotModified:
        project = request_project(request)
        # A plain dict, not the QueryDict: DRF would read a blank `?version=` as absent instead of invalid.
        query = ResolveQuerySerializer(data=request.query_params.dict())
        if not query.is_valid():
            self.get_object()  # another project's prompt is a 404 whatever the query says
            raise ValidationError(query.errors)
        label, number = query.validated_data.get("label"), query.validated_data.get("version")
        if number is None and label is None:
            label = LATEST_LABEL  # the same body, so the same ETag, as `label=latest`
        requested = f"version={number}" if number is not None else f"label={label}"
        # The fast path: one query (no version content) decides a revalidation.
        found = selectors.version_resolve_ref(project=project, ref=ref, version=number, label=label)
        etag = resolve_etag(
            version_id=found.version_id, requested=requested, prompt_name=found.prompt_name, created_by=found.created_by
        )
        headers = {"ETag": etag, "Cache-Control": RESOLVE_CACHE_CONTROL}
        if etag_matches(request.headers.get("If-None-Match", ""), etag):
            return HttpResponseNotModified(headers=headers)
        version = selectors.version_get_by_id(project=project, version_id=found.version_id)
        version.requested = {"label": label if number is None else None, "version": number}  # type: ignore[attr-defined]
        # From the row just read, so the tag always describes the body it comes with.
        headers["ETag"] = resolve_etag(
            version_id=version.pk,
            requested=requested,
            prompt_name=version.prompt.name,
            created_by=version.created_by.username if version.created_by else None,
        )
        return Response(ResolvedVersionSerializer(version).data, headers=headers)

    @extend_schema(summary="Labels and their move history", responses={200: LabelsSerializer}, parameters=[PROMPT_REF])
    @action(detail=True, methods=["get"], url_path="labels", pagination_class=None)
    def labels(self, request: Request, ref: str) -> Response:
        prompt = self.get_object()
        return Response(
            LabelsSerializer(
                {
                    "labels": selectors.label_list(prompt=prompt),
                    "history": selectors.label_history(prompt=prompt)[:LABEL_HISTORY_LIMIT],
                }
            ).data
        )

    @extend_schema(
        summary="Point a label at a version (deploy or roll back), or split its runs between versions",
        description=(
            "Sets the label as a whole: `version`, and `split` (left out: none, so a move clears a split). "
            "A protected label changes only for an admin. Every version that starts getting the label's runs "
            "must pass the label's gates (409 naming the gate). A split that breaks a rule JSON Schema cannot "
            "state (weights summing to 100, versions that exist, each once, the label's `version` among them) "
            "is a 400 naming `split` or `split.<i>.version`."
        ),
        request=LabelMoveInputSerializer,
        responses={200: LabelSerializer, 409: ARCHIVED},
        examples=[
            OpenApiExample("Deploy version 2", request_only=True, value={"version": 2}),
            OpenApiExample(
                "Split 90/10 between versions 2 and 3",
                request_only=True,
                value={"version": 2, "split": [{"version": 2, "weight": 90}, {"version": 3, "weight": 10}]},
            ),
        ],
        parameters=[
            PROMPT_REF,
            OpenApiParameter(
                "label",
                OpenApiTypes.STR,
                OpenApiParameter.PATH,
                description="Label name: a slug, not `latest` (always the highest version, never moved).",
                pattern=rf"^(?!{LATEST_LABEL}$)[-a-zA-Z0-9_]+$",
            ),
        ],
    )
    @action(detail=True, methods=["put"], url_path=r"labels/(?P<label>[-a-zA-Z0-9_]+)")
    def move_label(self, request: Request, ref: str, label: str) -> Response:
        prompt = self.get_object()
        serializer = LabelMoveInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        moved = services.label_split_set(
            prompt=prompt,
            label=label,
            version_number=serializer.validated_data["version"],
            split=serializer.validated_data.get("split"),
            moved_by=request.user,  # type: ignore[arg-type]
            role=request_role(request),
        )
        return Response(LabelSerializer(moved).data)


@extend_schema_view(
    list=extend_schema(summary="List a prompt's versions, newest first"),
    create=extend_schema(
        summary="Create the next version of a prompt",
        description=(
            "The request names what changes. Its content (`template` or `messages`) is always given; a `model`, "
            "`variables` or `params` left out is that of the version it is based on: `based_on` (a version number; "
            "a number that does not exist is a 400 naming `based_on`), else the latest version."
        ),
        request=VersionInputSerializer,
        examples=VERSION_EXAMPLES,
        responses={201: VersionSerializer, 409: ARCHIVED},
    ),
    retrieve=extend_schema(
        summary="Get one version by number",
        parameters=[OpenApiParameter("number", OpenApiTypes.INT, OpenApiParameter.PATH)],
    ),
)
@extend_schema(tags=["prompts"], parameters=[PROMPT_REF])
class PromptVersionViewSet(viewsets.GenericViewSet):
    """Versions are immutable: there is no update or delete."""

    serializer_class = VersionSerializer
    required_scopes = {"list": Scope.PROMPTS_READ, "retrieve": Scope.PROMPTS_READ, "create": Scope.PROMPTS_WRITE}
    lookup_field = "number"
    lookup_value_regex = "[0-9]+"

    def _prompt(self) -> Prompt:
        return selectors.prompt_get(project=request_project(self.request), ref=self.kwargs["ref"])

    def get_queryset(self) -> QuerySet[PromptVersion]:
        return selectors.version_list(prompt=self._prompt())

    def list(self, request: Request, ref: str) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(VersionSerializer(page, many=True).data)

    def create(self, request: Request, ref: str) -> Response:
        prompt = self._prompt()
        serializer = VersionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = services.prompt_version_create(prompt=prompt, created_by=request.user, **serializer.validated_data)  # type: ignore[arg-type]
        return Response(VersionSerializer(version).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request: Request, ref: str, number: Any) -> Response:
        version = selectors.version_get(prompt=self._prompt(), number=int(number))
        return Response(VersionSerializer(version).data)
