from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from llmops.serializers import StrictInputSerializer
from runs.models import Run

MAX_METADATA_KEYS = 32


class RunCreateSerializer(StrictInputSerializer):
    prompt = serializers.CharField(max_length=100, required=False, help_text="The prompt's id or name.")
    version = serializers.IntegerField(min_value=1, required=False)
    label = serializers.SlugField(  # type: ignore[assignment]
        max_length=50, required=False, help_text="Default: `production` if set, else latest."
    )
    variables = serializers.DictField(required=False, default=dict)
    params = serializers.DictField(required=False, default=dict, help_text="Overrides of the version's parameters.")
    model = serializers.CharField(
        max_length=255, required=False, help_text="Override of the version's model: <provider>/<model id>."
    )
    metadata = serializers.DictField(
        child=serializers.CharField(max_length=500, allow_blank=True),
        required=False,
        default=dict,
        help_text=f"String tags, at most {MAX_METADATA_KEYS}.",
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
    """The seed's body shape, accepted by POST /api/v1/run besides the RunCreateSerializer one."""

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
        required=False, min_value=0, max_value=60, help_text="Seconds to wait for the result."
    )


class RunFilterSerializer(serializers.Serializer):
    prompt = serializers.CharField(required=False, max_length=100, help_text="Prompt id or name.")
    version = serializers.IntegerField(required=False, min_value=1)
    status = serializers.ChoiceField(required=False, choices=Run.Status.choices)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class UsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField(allow_null=True)
    completion_tokens = serializers.IntegerField(allow_null=True)
    total_tokens = serializers.IntegerField(allow_null=True)
    estimated = serializers.BooleanField(help_text="Counted locally because the provider returned no usage.")


class CostSerializer(serializers.Serializer):
    amount = serializers.DecimalField(max_digits=18, decimal_places=10, allow_null=True)
    currency = serializers.CharField()
    known = serializers.BooleanField(help_text="False when no price is known for the model (amount is null).")


class RunErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


# Base of output serializers of objects tied to one prompt version (runs, batches). A comment, not a
# docstring: drf-spectacular would copy a docstring into every subclass's schema description.
class PromptVersionRefSerializer(serializers.ModelSerializer):
    prompt = serializers.UUIDField(source="prompt_version.prompt_id", read_only=True)
    prompt_name = serializers.CharField(source="prompt_version.prompt.name", read_only=True)
    version = serializers.IntegerField(source="prompt_version.number", read_only=True)
    prompt_version_id = serializers.UUIDField(read_only=True)


class RunSerializer(PromptVersionRefSerializer):
    url = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()
    cost = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id",
            "url",
            "status",
            "prompt",
            "prompt_name",
            "version",
            "prompt_version_id",
            "provider",
            "model",
            "variables",
            "params",
            "metadata",
            "rendered_input",
            "output",
            "finish_reason",
            "usage",
            "cost",
            "latency_ms",
            "attempts",
            "error",
            "idempotency_key",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_url(self, run: Run) -> str:
        path = f"/api/v1/runs/{run.pk}"
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    @extend_schema_field(UsageSerializer)
    def get_usage(self, run: Run) -> dict[str, Any]:
        return {
            "prompt_tokens": run.prompt_tokens,
            "completion_tokens": run.completion_tokens,
            "total_tokens": run.total_tokens,
            "estimated": run.tokens_estimated,
        }

    @extend_schema_field(CostSerializer(allow_null=True))
    def get_cost(self, run: Run) -> dict[str, Any] | None:
        cost_log = getattr(run, "cost_log", None)
        if cost_log is None:
            return None
        # Through the serializer so money stays a decimal string, never a float.
        return CostSerializer(
            {"amount": cost_log.total_cost, "currency": cost_log.currency, "known": cost_log.cost_known}
        ).data

    @extend_schema_field(RunErrorSerializer(allow_null=True))
    def get_error(self, run: Run) -> dict[str, Any] | None:
        if not run.error_code:
            return None
        return {"code": run.error_code, "message": run.error_message}
