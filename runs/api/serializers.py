from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from llmops.schema import not_together
from llmops.serializers import StrictInputSerializer
from prompts.api.serializers import ModelField, ParamsField
from prompts.splits import MAX_SPLIT_KEY
from runs.models import Run

MAX_METADATA_KEYS = 32
MAX_METADATA_VALUE = 500
METADATA_SCHEMA = {
    "type": "object",
    "maxProperties": MAX_METADATA_KEYS,
    "additionalProperties": {"type": "string", "maxLength": MAX_METADATA_VALUE},
}


@extend_schema_field(METADATA_SCHEMA)
class _MetadataField(serializers.DictField):
    child = serializers.CharField(max_length=MAX_METADATA_VALUE, allow_blank=True)


class RunCreateSerializer(StrictInputSerializer):
    json_schema_rules = [not_together("version", "label")]

    prompt = serializers.CharField(max_length=100, help_text="The prompt's id or name.")
    version = serializers.IntegerField(min_value=1, required=False)
    label = serializers.SlugField(  # type: ignore[assignment]
        max_length=50, required=False, help_text="Default: `production` if set, else latest."
    )
    variables = serializers.DictField(required=False, default=dict)
    params = ParamsField(required=False, default=dict, help_text="Overrides of the version's parameters.")
    model = ModelField(
        max_length=255, required=False, help_text="Override of the version's model: <provider>/<model id>."
    )
    metadata = _MetadataField(required=False, default=dict, help_text=f"String tags, at most {MAX_METADATA_KEYS}.")
    split_key = serializers.CharField(
        max_length=MAX_SPLIT_KEY,
        required=False,
        help_text=(
            "Who the run is for (a user id, a session): a label with an A/B split sends every run of the same "
            "key to the same version while the split is unchanged; without it, a version at random by weight. "
            "Kept only as a keyed hash (`split_key_hash`)."
        ),
    )

    def validate_metadata(self, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_METADATA_KEYS:
            raise serializers.ValidationError(f"At most {MAX_METADATA_KEYS} keys.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "version" in attrs and "label" in attrs:
            raise serializers.ValidationError({"label": ["Give a version or a label, not both."]})
        return attrs


class SeedRunCreateSerializer(RunCreateSerializer):
    """The body of POST /api/v1/run: that of POST /api/v1/runs, or a prompt version named by its id."""

    json_schema_rules = [
        *RunCreateSerializer.json_schema_rules,
        {
            "oneOf": [
                {"required": ["prompt"], "not": {"required": ["prompt_version_id"]}},
                {
                    "required": ["prompt_version_id"],
                    "not": {"anyOf": [{"required": [name]} for name in ("prompt", "version", "label")]},
                },
            ]
        },
    ]

    prompt = serializers.CharField(
        max_length=100, required=False, help_text="The prompt's id or name (or give prompt_version_id)."
    )
    prompt_version_id = serializers.UUIDField(required=False, help_text="Seed shape: a prompt version's id.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if "prompt_version_id" in attrs and ({"prompt", "version", "label"} & set(attrs)):
            raise serializers.ValidationError(
                {"prompt_version_id": ["Give prompt_version_id alone, or prompt with version/label."]}
            )
        if "prompt_version_id" not in attrs and "prompt" not in attrs:
            raise serializers.ValidationError({"prompt": ["This field is required."]})
        return attrs


class RunCreateQuerySerializer(serializers.Serializer):
    wait = serializers.FloatField(
        required=False,
        min_value=0,
        max_value=60,
        help_text=f"Seconds to wait for the result; the wait is cut at RUN_WAIT_MAX_S ({settings.RUN_WAIT_MAX_S}).",
    )


class RunFilterSerializer(serializers.Serializer):
    prompt = serializers.CharField(required=False, max_length=100, help_text="Prompt id or name.")
    version = serializers.IntegerField(required=False, min_value=1)
    status = serializers.ChoiceField(required=False, choices=Run.Status.choices)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
