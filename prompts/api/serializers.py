from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from llmops.schema import NON_BLANK, exactly_one_of, not_together
from llmops.serializers import StrictInputSerializer
from prompts import services
from prompts.models import LATEST_LABEL, LabelMove, Prompt, PromptLabel, PromptVersion
from prompts.rendering import CHAT_ROLES, VARIABLE_TYPES
from prompts.splits import MAX_SPLIT_ARMS, SPLIT_TOTAL
from providers.checks import MODEL_PATTERN

# A declared variable, as rendering.normalize_variables takes it: known keys only. (Its default must be
# of the declared type: stated as an anyOf per type, it makes Schemathesis 4.32 fail to generate
# negative cases, so it is said in words.)
_VARIABLE_SPEC = {
    "type": "object",
    "properties": {
        "type": {"enum": list(VARIABLE_TYPES), "default": "string"},
        "required": {"type": "boolean", "description": "Default: true unless a default is given."},
        "default": {"description": "A value of the variable's type."},
        "description": {"type": "string"},
    },
    "additionalProperties": False,
}


# (Variable names are identifiers, `^[A-Za-z_][A-Za-z0-9_]{0,63}$`: OpenAPI 3.0 cannot say so of keys.)
@extend_schema_field({"type": "object", "additionalProperties": _VARIABLE_SPEC})
class VariablesField(serializers.DictField):
    """Declarations pass through as given: rendering.normalize_variables checks each and names it."""

    child = serializers.DictField()


@extend_schema_field(services.params_json_schema())
class ParamsField(serializers.DictField):
    """Model parameters pass through as given: services.validate_params checks them and names each bad one."""


@extend_schema_field({"type": "string", "pattern": MODEL_PATTERN})
class ModelField(serializers.CharField):
    """`<provider>/<model id>`; its shape is checked by the services, which name the field."""


@extend_schema_field({"type": "string", "pattern": NON_BLANK})
class _TemplateField(serializers.CharField):
    """Kept as given (not trimmed), but more than whitespace: the service refuses a blank template."""


class MessageSerializer(StrictInputSerializer):
    role = serializers.ChoiceField(choices=CHAT_ROLES)
    content = serializers.CharField(max_length=100_000, trim_whitespace=False)


class _VersionContentSerializer(StrictInputSerializer):
    # What a new version is: always given, a text template or chat messages (at least one: the
    # service refuses [] and names `messages`).
    json_schema_rules = [exactly_one_of("template", "messages"), {"properties": {"messages": {"minItems": 1}}}]

    template = _TemplateField(
        required=False,
        max_length=100_000,
        trim_whitespace=False,
        help_text="Text template with {{ variable }} placeholders. Give this or `messages`.",
    )
    messages = MessageSerializer(many=True, required=False, help_text="Chat messages. Give this or `template`.")
    commit_message = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


_VARIABLES_HELP = (
    'Declared variables: {"name": {"type": "string|integer|number|boolean|array|object", '
    '"required": true, "default": ..., "description": "..."}}'
)
_PARAMS_HELP = "temperature, top_p, max_tokens, stop, seed, frequency_penalty, presence_penalty"


class VersionInputSerializer(_VersionContentSerializer):
    """The next version: its content (`template` or `messages`) is always given. `model`, `variables`
    and `params` left out are those of the version it is based on: `based_on`, else the latest."""

    model = ModelField(
        max_length=255, required=False, help_text="<provider>/<model id>, e.g. local/smollm2. Default: the base's."
    )
    variables = VariablesField(required=False, help_text=f"{_VARIABLES_HELP}. Default: the base's.")
    params = ParamsField(required=False, help_text=f"{_PARAMS_HELP}. Default: the base's.")
    based_on = serializers.IntegerField(
        min_value=1,
        required=False,
        help_text="Number of the version that omitted fields come from. Default: the latest.",
    )


class PromptCreateSerializer(_VersionContentSerializer):
    """A prompt and its version 1 (nothing to take fields from: `variables` and `params` default to none)."""

    name = serializers.SlugField(max_length=100)
    description = serializers.CharField(max_length=10_000, required=False, default="", allow_blank=True)
    model = ModelField(max_length=255, help_text="<provider>/<model id>, e.g. local/smollm2")
    variables = VariablesField(required=False, default=dict, help_text=_VARIABLES_HELP)
    params = ParamsField(required=False, default=dict, help_text=_PARAMS_HELP)


class PromptUpdateSerializer(StrictInputSerializer):
    description = serializers.CharField(
        max_length=10_000, required=False, allow_blank=True, help_text="Left out: unchanged."
    )


class VersionSerializer(serializers.ModelSerializer):
    prompt = serializers.UUIDField(source="prompt_id", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    messages = MessageSerializer(many=True, read_only=True)

    class Meta:
        model = PromptVersion
        fields = [
            "id",
            "prompt",
            "number",
            "kind",
            "template",
            "messages",
            "variables",
            "model",
            "params",
            "commit_message",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields


class ResolveQuerySerializer(serializers.Serializer):
    # Query data: DRF's conversions of strings are the point, so not a TypedInputSerializer. Unknown
    # parameters are ignored, as by the other GETs (`project` names the project).
    label = serializers.SlugField(  # type: ignore[assignment]
        max_length=50, required=False, help_text=f"A label, or `{LATEST_LABEL}` (the default). Not with `version`."
    )
    version = serializers.IntegerField(min_value=1, required=False, help_text="A version number. Not with `label`.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "version" in attrs and "label" in attrs:
            raise serializers.ValidationError({"label": ["Give a version or a label, not both."]})
        return attrs


class ResolveRequestedSerializer(serializers.Serializer):
    label = serializers.CharField(  # type: ignore[assignment]
        allow_null=True, help_text=f"The label asked for (`{LATEST_LABEL}` if neither)."
    )
    version = serializers.IntegerField(allow_null=True, help_text="The version number asked for.")


class ResolvedVersionSerializer(VersionSerializer):
    """A version as GET /versions/{number} shows it, with its prompt's name and what was asked for."""

    prompt_name = serializers.CharField(source="prompt.name", read_only=True)
    requested = ResolveRequestedSerializer(read_only=True, help_text="The label or version asked for.")

    class Meta(VersionSerializer.Meta):
        fields = [*VersionSerializer.Meta.fields, "prompt_name", "requested"]
        read_only_fields = fields


class PromptSerializer(serializers.ModelSerializer):
    latest_version = serializers.IntegerField(source="latest_version_number", read_only=True)
    labels = serializers.SerializerMethodField(help_text="Label name -> version number.")

    class Meta:
        model = Prompt
        fields = ["id", "name", "description", "latest_version", "labels", "archived_at", "created_at", "updated_at"]
        read_only_fields = fields

    def get_labels(self, prompt: Prompt) -> dict[str, int]:
        return {label.name: label.version.number for label in prompt.labels.all()}


class PromptCreatedSerializer(PromptSerializer):
    version = VersionSerializer(read_only=True, help_text="The initial version (1).")

    class Meta(PromptSerializer.Meta):
        fields = [*PromptSerializer.Meta.fields, "version"]
        read_only_fields = fields


_SPLIT_ARM = {
    "type": "object",
    "properties": {
        "version": {"type": "integer", "minimum": 1, "description": "A version number of this prompt."},
        "weight": {"type": "integer", "minimum": 1, "maximum": SPLIT_TOTAL - 1, "description": "Percent of runs."},
    },
    "required": ["version", "weight"],
    "additionalProperties": False,
}
_SPLIT_RULES = (
    f"An A/B split of the label's runs: 2 to {MAX_SPLIT_ARMS} arms, each a version of this prompt (each once) "
    f"with a whole percentage; the weights sum to {SPLIT_TOTAL} and the label's `version` is one of the arms. "
    "A run of the label with a `split_key` (the gateway: `user`) gets the arm its key hashes to, always the "
    "same while the split is unchanged; with none, an arm at random, by weight."
)


@extend_schema_field({"type": "array", "maxItems": MAX_SPLIT_ARMS, "items": _SPLIT_ARM, "nullable": True})
class SplitField(serializers.JSONField):
    """Passed on as given: prompts.services.split_check checks it and names each bad part."""


class SplitArmSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    weight = serializers.IntegerField(help_text="Percent of the label's runs.")


class LabelMoveInputSerializer(StrictInputSerializer):
    version = serializers.IntegerField(
        min_value=1, help_text="The label's version: all its runs, or with `split` its main arm."
    )
    split = SplitField(
        required=False,
        allow_null=True,
        help_text=f"{_SPLIT_RULES} Left out, null or []: no split (all runs go to `version`; a split is cleared).",
    )


class LabelSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number", read_only=True)
    split = SplitArmSerializer(
        many=True, read_only=True, help_text="The label's A/B split ([] for none): its runs go to these by weight."
    )

    class Meta:
        model = PromptLabel
        fields = ["name", "version", "split", "updated_at"]
        read_only_fields = fields


class LabelMoveSerializer(serializers.ModelSerializer):
    from_version = serializers.IntegerField(source="from_version.number", read_only=True, allow_null=True, default=None)
    to_version = serializers.IntegerField(source="to_version.number", read_only=True)
    moved_by = serializers.CharField(source="moved_by.username", read_only=True, default=None)
    moved_at = serializers.DateTimeField(source="created_at", read_only=True)
    split = SplitArmSerializer(many=True, read_only=True, help_text="The label's split after this move ([]: none).")

    class Meta:
        model = LabelMove
        fields = ["label", "from_version", "to_version", "split", "moved_by", "moved_at"]
        read_only_fields = fields


class LabelsSerializer(serializers.Serializer):
    labels = LabelSerializer(many=True)
    history = LabelMoveSerializer(many=True, help_text="Label moves, newest first (at most 100).")


class RenderInputSerializer(StrictInputSerializer):
    json_schema_rules = [not_together("version", "label")]

    version = serializers.IntegerField(min_value=1, required=False)
    label = serializers.SlugField(  # type: ignore[assignment]
        max_length=50, required=False, help_text="A label, or `latest` (the default)."
    )
    variables = serializers.DictField(required=False, default=dict)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "version" in attrs and "label" in attrs:
            raise serializers.ValidationError({"label": ["Give a version or a label, not both."]})
        return attrs


class RenderedSerializer(serializers.Serializer):
    prompt = serializers.UUIDField()
    version = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=PromptVersion.Kind.choices)
    text = serializers.CharField(required=False, help_text="kind=text")
    messages = MessageSerializer(many=True, required=False, help_text="kind=chat")
