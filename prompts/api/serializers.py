from typing import Any

from rest_framework import serializers

from llmops.serializers import StrictInputSerializer
from prompts.models import LabelMove, Prompt, PromptLabel, PromptVersion
from prompts.rendering import CHAT_ROLES


class MessageSerializer(StrictInputSerializer):
    role = serializers.ChoiceField(choices=CHAT_ROLES)
    content = serializers.CharField(max_length=100_000, trim_whitespace=False)


class VersionInputSerializer(StrictInputSerializer):
    template = serializers.CharField(
        required=False,
        max_length=100_000,
        trim_whitespace=False,
        help_text="Text template with {{ variable }} placeholders. Give this or `messages`.",
    )
    messages = MessageSerializer(many=True, required=False, help_text="Chat messages. Give this or `template`.")
    variables = serializers.DictField(
        child=serializers.DictField(),
        required=False,
        default=dict,
        help_text='Declared variables: {"name": {"type": "string|integer|number|boolean|array|object", '
        '"required": true, "default": ..., "description": "..."}}',
    )
    model = serializers.CharField(max_length=255, help_text="<provider>/<model id>, e.g. local/smollm2")
    params = serializers.DictField(
        required=False, default=dict, help_text="temperature, top_p, max_tokens, stop, seed, frequency/presence_penalty"
    )
    commit_message = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class PromptCreateSerializer(VersionInputSerializer):
    name = serializers.SlugField(max_length=100)
    description = serializers.CharField(max_length=10_000, required=False, default="", allow_blank=True)


class PromptUpdateSerializer(StrictInputSerializer):
    description = serializers.CharField(max_length=10_000, allow_blank=True)


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


class LabelMoveInputSerializer(StrictInputSerializer):
    version = serializers.IntegerField(min_value=1)


class LabelSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number", read_only=True)

    class Meta:
        model = PromptLabel
        fields = ["name", "version", "updated_at"]
        read_only_fields = fields


class LabelMoveSerializer(serializers.ModelSerializer):
    from_version = serializers.IntegerField(source="from_version.number", read_only=True, allow_null=True, default=None)
    to_version = serializers.IntegerField(source="to_version.number", read_only=True)
    moved_by = serializers.CharField(source="moved_by.username", read_only=True, default=None)
    moved_at = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = LabelMove
        fields = ["label", "from_version", "to_version", "moved_by", "moved_at"]
        read_only_fields = fields


class LabelsSerializer(serializers.Serializer):
    labels = LabelSerializer(many=True)
    history = LabelMoveSerializer(many=True, help_text="Label moves, newest first (at most 100).")


class RenderInputSerializer(StrictInputSerializer):
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
