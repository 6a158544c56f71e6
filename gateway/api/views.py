"""The OpenAI-compatible endpoints: POST /v1/chat/completions and GET /v1/models.

A call is a run like any other (runs.services.run_create: the same checks, rate limits, budget and
cost), executed in the request (runs.inline) instead of by a worker. Errors are OpenAI's shape
(llmops.openai_errors), with OpenAI's status codes, so the OpenAI SDKs raise their usual exceptions.
"""

import json
import time
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.access import request_project
from accounts.models import APIKey, Scope
from gateway.api.serializers import (
    ChatCompletionRequestSerializer,
    ChatCompletionSerializer,
    GatewayModelListSerializer,
    OpenAIErrorSerializer,
)
from llmops.errors import DomainError, NotFound, ValidationFailed
from llmops.exception_handler import api_exception_handler
from llmops.openai_errors import openai_error_body
from prompts import selectors as prompt_selectors
from providers.clients import ProviderError
from providers.selectors import model_choices
from runs import inline, services
from runs.models import Run

# Where a provider's refusal of a gateway call leaves the client (its error codes: providers.clients).
_UPSTREAM_STATUS = {
    "rate_limited": HTTPStatus.TOO_MANY_REQUESTS,
    "timeout": HTTPStatus.GATEWAY_TIMEOUT,
    "model_not_found": HTTPStatus.NOT_FOUND,
    "bad_request": HTTPStatus.BAD_REQUEST,
    "context_length_exceeded": HTTPStatus.BAD_REQUEST,
    "provider_disabled": HTTPStatus.SERVICE_UNAVAILABLE,
    "unknown_provider": HTTPStatus.SERVICE_UNAVAILABLE,
}
# The request fields a run_create refusal may name, as the gateway's request calls them.
_FIELD_NAMES = {"prompt": "model", "label": "model", "version": "model", "params": None}


class UpstreamFailed(DomainError):
    """The provider failed the call, after the run's retries; the run is recorded as failed."""

    def __init__(self, error: ProviderError, run: Run):
        status = _UPSTREAM_STATUS.get(error.code, HTTPStatus.BAD_GATEWAY)
        retry_after = round(error.retry_after) if error.retry_after is not None else None
        if status in (HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE) and retry_after is None:
            retry_after = 1
        super().__init__(f"{error.message} (run {run.pk})", code=f"upstream_{error.code}", retry_after=retry_after)
        self.status_code = status


def openai_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """The platform's handler (every failure, 503s for a dependency that is down), said OpenAI's way."""
    if isinstance(exc, DomainError) and exc.fields:
        exc.fields = {_gateway_field(name): problems for name, problems in exc.fields.items()}
    response = api_exception_handler(exc, context)
    response.data = openai_error_body(response.data, response.status_code)
    return response


def _gateway_field(name: str) -> str:
    head, _, rest = name.partition(".")
    if head in _FIELD_NAMES:
        return _FIELD_NAMES[head] or rest or head
    return name


ERRORS = {
    400: OpenApiResponse(OpenAIErrorSerializer, description="Invalid request; `param` names the field."),
    401: OpenApiResponse(OpenAIErrorSerializer, description="No valid API key (`Authorization: Bearer`)."),
    402: OpenApiResponse(OpenAIErrorSerializer, description="A budget of the project or key refuses the call."),
    403: OpenApiResponse(
        OpenAIErrorSerializer, description="The key lacks runs:execute, or the role does not allow it."
    ),
    404: OpenApiResponse(OpenAIErrorSerializer, description="No such prompt, label, version or upstream model."),
    429: OpenApiResponse(OpenAIErrorSerializer, description="Rate limited (here or upstream); see Retry-After."),
    502: OpenApiResponse(OpenAIErrorSerializer, description="The provider failed the call after the retries."),
    503: OpenApiResponse(OpenAIErrorSerializer, description="A dependency (database, Redis, provider) is unavailable."),
    504: OpenApiResponse(OpenAIErrorSerializer, description="The provider timed out."),
}


class OpenAIView(APIView):
    error_serializer = OpenAIErrorSerializer  # the schema's error shape (llmops.schema)

    def get_exception_handler(self) -> Any:
        return openai_exception_handler


def _usage(run: Run) -> dict[str, int]:
    prompt_tokens, completion_tokens = run.prompt_tokens or 0, run.completion_tokens or 0
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _model_name(run: Run) -> str:
    return f"{run.provider}/{run.model}"


def completion_body(run: Run) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{run.pk.hex}",
        "object": "chat.completion",
        "created": int(run.created_at.timestamp()),
        "model": _model_name(run),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": run.output},
                "finish_reason": run.finish_reason or "stop",
            }
        ],
        "usage": _usage(run),
        "run_id": str(run.pk),
    }


class ChatCompletionsView(OpenAIView):
    required_scopes = {"post": Scope.RUNS_EXECUTE}

    @extend_schema(
        tags=["gateway"],
        summary="Chat completion (OpenAI-compatible): a managed prompt or a model, recorded as a run",
        description=(
            "The OpenAI chat-completions request with the platform's API key. `model` names a prompt "
            "(`prompt:<name>[@<label or version>]`, with `variables`; the request's messages follow the "
            "prompt's) or a model (`<provider>/<model id>`). Every call is a run, rate-limited, budgeted "
            "and charged as POST /api/v1/runs, executed in the request with the same retries. With "
            "`stream: true` the answer comes as server-sent events (`chat.completion.chunk` objects, then "
            "`data: [DONE]`; the usage chunk with `stream_options.include_usage`); a stream its client "
            "leaves is recorded `incomplete` and charged for what was generated."
        ),
        request=ChatCompletionRequestSerializer,
        responses={
            (200, "application/json"): ChatCompletionSerializer,
            (200, "text/event-stream"): OpenApiResponse(
                OpenApiTypes.STR,
                description="With `stream: true`: `data: <chat.completion.chunk JSON>` events, then `data: [DONE]`.",
            ),
            **ERRORS,
        },
        examples=[
            OpenApiExample(
                "A managed prompt at its production label",
                value={"model": "prompt:greet@production", "variables": {"name": "Ada"}},
                request_only=True,
            ),
            OpenApiExample(
                "A model",
                value={"model": "local/smollm2", "messages": [{"role": "user", "content": "Say hi."}]},
                request_only=True,
            ),
        ],
    )
    def post(self, request: Request) -> Response | StreamingHttpResponse:
        serializer = ChatCompletionRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        ref = data["ref"]
        try:
            run, _ = self._run_create(request, serializer)
        except ValidationFailed as exc:
            missing = any(
                name in ("prompt", "label", "version") and any(p.startswith("No such") for p in problems)
                for name, problems in exc.fields.items()
            )
            if ref.prompt is not None and missing:
                message = f"{data['model']!r} is not a prompt of this project: {exc.message}"
                raise NotFound(message, fields=exc.fields, code="model_not_found") from None
            raise
        if data["stream"]:
            include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
            return _stream_response(run, include_usage=include_usage)
        try:
            run = inline.run_inline(run)
        except inline.RunFailed as failed:
            raise UpstreamFailed(failed.error, failed.run) from None
        return Response(completion_body(run), headers={"X-Run-Id": str(run.pk)})

    def _run_create(self, request: Request, serializer: ChatCompletionRequestSerializer) -> tuple[Run, bool]:
        data = serializer.validated_data
        ref = data["ref"]
        return services.run_create(
            project=request_project(request),
            created_by=request.user,  # type: ignore[arg-type]
            api_key=request.auth if isinstance(request.auth, APIKey) else None,
            prompt=ref.prompt,
            label=ref.label,
            version=ref.version,
            model=ref.model,
            variables=data["variables"],
            params=serializer.run_params(),
            messages=data["messages"],
            metadata=serializer.run_metadata(),
            inline=True,
            # OpenAI's `user` (the end user) keys a prompt label's A/B split: the same user, the same arm.
            split_key=data.get("user") if ref.prompt is not None else None,
        )


def _sse(payload: dict[str, Any] | str) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def _stream_response(run: Run, *, include_usage: bool) -> StreamingHttpResponse:
    """Opens the provider's stream now, so a provider that refuses is an ordinary error response;
    then relays its chunks as they come."""
    try:
        stream = inline.run_stream(run)
    except inline.RunFailed as failed:
        raise UpstreamFailed(failed.error, failed.run) from None
    response = StreamingHttpResponse(_events(stream, include_usage=include_usage), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a proxy in front must pass each chunk on as it comes
    response["X-Run-Id"] = str(run.pk)
    return response


def _events(stream: inline.InlineStream, *, include_usage: bool) -> Iterator[bytes]:
    run = stream.run
    base = {
        "id": f"chatcmpl-{run.pk.hex}",
        "object": "chat.completion.chunk",
        "created": int(run.created_at.timestamp()),
        "model": _model_name(run),
    }
    first = True
    for chunk in stream:
        if not chunk.text and not first:
            continue
        delta: dict[str, Any] = {"content": chunk.text}
        if first:
            delta["role"] = "assistant"
            first = False
        yield _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    if stream.error is not None:
        error = UpstreamFailed(stream.error, run)
        body: dict[str, Any] = {
            "error": {"code": error.code, "message": error.message, "fields": {}, "request_id": None}
        }
        yield _sse(openai_error_body(body, int(error.status_code)))
        return
    yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": stream.finish_reason or "stop"}]})
    if include_usage:
        yield _sse({**base, "choices": [], "usage": _usage(stream.run)})
    yield _sse("[DONE]")


class ModelListView(OpenAIView):
    required_scopes = {"get": Scope.PROMPTS_READ}

    @extend_schema(
        tags=["gateway"],
        summary="Models (OpenAI-compatible): the project's prompts and the enabled providers' models",
        responses={200: GatewayModelListSerializer, 401: ERRORS[401], 403: ERRORS[403], 503: ERRORS[503]},
    )
    def get(self, request: Request) -> Response:
        project = request_project(request)
        prompts = prompt_selectors.prompt_list(project=project)
        data = [
            {
                "id": f"prompt:{prompt.name}",
                "object": "model",
                "created": int(prompt.created_at.timestamp()),
                "owned_by": project.slug,
            }
            for prompt in prompts
        ]
        now = int(time.time())
        for provider, models in model_choices():
            data.extend({"id": value, "object": "model", "created": now, "owned_by": provider} for value, _ in models)
        return Response({"object": "list", "data": data})
