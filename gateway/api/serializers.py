"""The OpenAI chat-completions request and response, as the gateway takes and answers them."""

import re
from dataclasses import dataclass
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from llmops.serializers import StrictInputSerializer
from prompts.services import params_json_schema
from providers.checks import MODEL_PATTERN

# `prompt:<name>`, `prompt:<name>@<label>` or `prompt:<name>@<version number>`.
PROMPT_MODEL_PATTERN = r"^prompt:([-a-zA-Z0-9_]{1,100})(?:@([-a-zA-Z0-9_]{1,50}))?$"
_PROMPT_MODEL = re.compile(PROMPT_MODEL_PATTERN)
ROLES = ("system", "user", "assistant", "developer")
_NAMES_A_PROMPT = {"properties": {"model": {"pattern": PROMPT_MODEL_PATTERN}}}
# OpenAI request fields this gateway does not implement: refused by name rather than ignored.
UNSUPPORTED = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "parallel_tool_calls",
    "response_format",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "modalities",
    "audio",
    "prediction",
    "reasoning_effort",
    "service_tier",
    "web_search_options",
)


@dataclass(frozen=True)
class ModelRef:
    """What a request's `model` names: a managed prompt (at a label or version) or a plain model."""

    prompt: str | None = None
    label: str | None = None
    version: int | None = None
    model: str | None = None


def model_ref(model: str) -> ModelRef:
    match = _PROMPT_MODEL.fullmatch(model)
    if match is None:
        return ModelRef(model=model)
    name, selector = match.groups()
    if selector is None:
        return ModelRef(prompt=name)
    if selector.isdigit():
        return ModelRef(prompt=name, version=int(selector))
    return ModelRef(prompt=name, label=selector)


class GatewayTextPartSerializer(StrictInputSerializer):
    type = serializers.ChoiceField(choices=["text"])
    text = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=1_000_000)


TEXT_PART_SCHEMA = {
    "type": "object",
    "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string", "maxLength": 1_000_000}},
    "required": ["type", "text"],
    "additionalProperties": False,
}


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "array", "items": TEXT_PART_SCHEMA}]})
class ContentField(serializers.Field):
    """A message's content: a string, or a list of text parts (joined)."""

    default_error_messages = {
        # (Braces doubled: DRF formats these messages.)
        "invalid": "Must be a string or a list of text parts ({{'type': 'text', 'text': ...}}).",
    }

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, str):
            return data
        if isinstance(data, list):
            parts = GatewayTextPartSerializer(data=data, many=True)
            if parts.is_valid():
                return "".join(part["text"] for part in parts.validated_data)
        self.fail("invalid")

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {"type": "array", "maxItems": 4, "items": {"type": "string", "minLength": 1}},
        ]
    }
)
class StopField(serializers.Field):
    """Stop sequences: a string, or a list of at most 4 non-empty strings."""

    default_error_messages = {"invalid": "Must be a string or a list of at most 4 non-empty strings."}

    def to_internal_value(self, data: Any) -> str | list[str]:
        if isinstance(data, str) or (
            isinstance(data, list) and len(data) <= 4 and all(isinstance(s, str) and s for s in data)
        ):
            return data
        self.fail("invalid")

    def to_representation(self, value: Any) -> Any:
        return value


class GatewayMessageSerializer(StrictInputSerializer):
    role = serializers.ChoiceField(
        choices=ROLES, help_text="`developer` is sent as `system`; tool messages are not supported."
    )
    content = ContentField(help_text="A string, or a list of text parts.")
    name = serializers.CharField(required=False, max_length=64, help_text="Accepted and not sent on.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        role = "system" if attrs["role"] == "developer" else attrs["role"]
        return {"role": role, "content": attrs["content"]}


_RUN_PARAMS_SCHEMA = params_json_schema()["properties"]


@extend_schema_field(_RUN_PARAMS_SCHEMA["fallbacks"])
class FallbacksField(serializers.JSONField):
    """Passed on as given: prompts.services.validate_params checks it and names each bad item."""


@extend_schema_field(_RUN_PARAMS_SCHEMA["cache"])
class CacheField(serializers.JSONField):
    """Passed on as given: prompts.services.validate_params checks it."""


class GatewayStreamOptionsSerializer(StrictInputSerializer):
    include_usage = serializers.BooleanField(required=False, default=False)


class ChatCompletionRequestSerializer(StrictInputSerializer):
    model = serializers.RegexField(
        f"{PROMPT_MODEL_PATTERN}|{MODEL_PATTERN}",
        max_length=300,
        error_messages={
            "invalid": "Must be `prompt:<name>[@<label or version>]` or `<provider>/<model id>`, e.g. `local/smollm2`."
        },
        help_text=(
            "A managed prompt, `prompt:<name>` (its latest version), `prompt:<name>@<label>` or "
            "`prompt:<name>@<version number>`; or a model, `<provider>/<model id>`."
        ),
    )
    messages = serializers.ListField(
        child=GatewayMessageSerializer(),
        required=False,
        default=list,
        max_length=1000,
        help_text="Sent after the prompt's rendered messages; the whole input for a plain model (then required).",
    )
    variables = serializers.DictField(
        required=False, default=dict, help_text="The prompt's variables (the OpenAI SDK sends it in `extra_body`)."
    )
    stream = serializers.BooleanField(required=False, default=False)
    stream_options = GatewayStreamOptionsSerializer(required=False)
    temperature = serializers.FloatField(required=False, min_value=0, max_value=2)
    top_p = serializers.FloatField(required=False, min_value=0, max_value=1)
    max_tokens = serializers.IntegerField(required=False, min_value=1, max_value=1_000_000)
    max_completion_tokens = serializers.IntegerField(
        required=False, min_value=1, max_value=1_000_000, help_text="Same as max_tokens (which wins if both)."
    )
    stop = StopField(required=False)
    seed = serializers.IntegerField(required=False)
    frequency_penalty = serializers.FloatField(required=False, min_value=-2, max_value=2)
    presence_penalty = serializers.FloatField(required=False, min_value=-2, max_value=2)
    n = serializers.IntegerField(required=False, min_value=1, max_value=1, help_text="Only 1 is supported.")
    user = serializers.CharField(
        required=False,
        max_length=256,
        help_text=(
            "Recorded in the run's metadata; for a prompt whose label has an A/B split, the split key: the "
            "same user always gets the same version while the split is unchanged."
        ),
    )
    metadata = serializers.DictField(
        child=serializers.CharField(max_length=512), required=False, help_text="Recorded on the run."
    )
    store = serializers.BooleanField(required=False, help_text="Accepted; every call is recorded as a run.")
    fallbacks = FallbacksField(
        required=False,
        help_text=(
            "Not OpenAI's: up to 3 models (`<provider>/<model id>`) tried in turn when the model answers 429 "
            "or keeps failing with a retryable error (the OpenAI SDK sends it in `extra_body`). The response's "
            "`model` is the one that answered."
        ),
    )
    cache = CacheField(
        required=False,
        help_text=(
            'Not OpenAI\'s: `{"ttl": seconds}`, the response cache. With `temperature` 0 or a `seed`, an '
            "identical call is answered from an answer at most `ttl` seconds old, not charged."
        ),
    )

    PARAMS = (
        "temperature",
        "top_p",
        "max_tokens",
        "stop",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "fallbacks",
        "cache",
    )
    # What `validate` checks between fields, in the schema: a model (not a prompt) needs messages
    # and takes no variables.
    json_schema_rules = [
        {"anyOf": [_NAMES_A_PROMPT, {"required": ["messages"], "properties": {"messages": {"minItems": 1}}}]},
        {"anyOf": [_NAMES_A_PROMPT, {"properties": {"variables": {"maxProperties": 0}}}]},
    ]

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unsupported = sorted(name for name in UNSUPPORTED if name in data)
            if unsupported:
                raise serializers.ValidationError(
                    {name: ["Not supported by this gateway (chat text only)."] for name in unsupported}
                )
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        ref = model_ref(attrs["model"])
        if ref.model is not None and not attrs["messages"]:
            raise serializers.ValidationError({"messages": ["Required (at least one) when `model` is not a prompt."]})
        if ref.model is not None and attrs["variables"]:
            raise serializers.ValidationError({"variables": ["Only a prompt takes variables."]})
        attrs["ref"] = ref
        return attrs

    def run_params(self) -> dict[str, Any]:
        data = self.validated_data
        params = {name: data[name] for name in self.PARAMS if name in data}
        if "max_tokens" not in params and "max_completion_tokens" in data:
            params["max_tokens"] = data["max_completion_tokens"]
        return params

    def run_metadata(self) -> dict[str, Any]:
        data = self.validated_data
        metadata = dict(data.get("metadata") or {})
        if "user" in data:
            metadata["user"] = data["user"]
        return {"gateway": True, **metadata}


# --- responses (the schema's shapes; the view builds plain dicts) ---


class GatewayUsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class GatewayAssistantMessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["assistant"])
    content = serializers.CharField()


class GatewayChoiceSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    message = GatewayAssistantMessageSerializer()
    finish_reason = serializers.CharField()


class ChatCompletionSerializer(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.ChoiceField(choices=["chat.completion"])
    created = serializers.IntegerField()
    model = serializers.CharField(help_text="`<provider>/<model id>` that answered.")
    choices = GatewayChoiceSerializer(many=True)
    usage = GatewayUsageSerializer()
    run_id = serializers.UUIDField(help_text="The run this call recorded: GET /api/v1/runs/{id}.")


class OpenAIErrorDetailSerializer(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField()
    param = serializers.CharField(allow_null=True)
    code = serializers.CharField(allow_null=True)
    request_id = serializers.CharField(allow_null=True)

    # `fields` added here: a class attribute of that name would hide Serializer.fields.
    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            **super().get_fields(),
            "fields": serializers.DictField(
                child=serializers.ListField(child=serializers.CharField()),
                help_text="Not OpenAI's: every field at fault and its problems (the first is `param`).",
            ),
        }


class OpenAIErrorSerializer(serializers.Serializer):
    error = OpenAIErrorDetailSerializer()


class GatewayModelSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="`prompt:<name>` or `<provider>/<model id>`.")
    object = serializers.ChoiceField(choices=["model"])
    created = serializers.IntegerField()
    owned_by = serializers.CharField()


class GatewayModelListSerializer(serializers.Serializer):
    # Fields from get_fields: one named `data` as a class attribute would hide Serializer.data.
    def get_fields(self) -> dict[str, serializers.Field]:
        return {"object": serializers.ChoiceField(choices=["list"]), "data": GatewayModelSerializer(many=True)}
