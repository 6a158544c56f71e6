"""A run's public shape: how the API (GET /api/v1/runs/{id}), the run.* webhook payloads and batch
exports all show a run, so a client sees one shape wherever a run reaches it."""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from runs.models import Run


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


class RunAttemptSerializer(serializers.Serializer):
    attempt = serializers.IntegerField(help_text="The attempt's number (the run's `attempts` counts them).")
    provider = serializers.CharField()
    model = serializers.CharField(help_text="The model this attempt called (`fallbacks` move to another).")
    error_code = serializers.CharField(help_text='Why the attempt failed; "" for the attempt that answered.')
    error_message = serializers.CharField(allow_blank=True)
    at = serializers.DateTimeField(help_text="When the attempt ended.")


# Base of output serializers of objects tied to one prompt version (runs, batches). A comment, not a
# docstring: drf-spectacular would copy a docstring into every subclass's schema description.
class PromptVersionRefSerializer(serializers.ModelSerializer):
    prompt = serializers.UUIDField(source="prompt_version.prompt_id", read_only=True)
    prompt_name = serializers.CharField(source="prompt_version.prompt.name", read_only=True)
    version = serializers.IntegerField(source="prompt_version.number", read_only=True)
    prompt_version_id = serializers.UUIDField(read_only=True)


class RunSerializer(PromptVersionRefSerializer):
    # Null for a gateway call that named a model, not a prompt.
    prompt = serializers.UUIDField(source="prompt_version.prompt_id", read_only=True, allow_null=True)
    prompt_name = serializers.CharField(source="prompt_version.prompt.name", read_only=True, allow_null=True)
    version = serializers.IntegerField(source="prompt_version.number", read_only=True, allow_null=True)
    prompt_version_id = serializers.UUIDField(read_only=True, allow_null=True)
    url = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()
    cost = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    attempt_log = RunAttemptSerializer(
        many=True,
        read_only=True,
        help_text=(
            "Each attempt that ended, in order: the provider and model it called and its error "
            '(`error_code` "" for the one that answered). With `fallbacks`, the models tried in turn; '
            "`provider` and `model` are the one that answered. Empty for a cached run."
        ),
    )
    cached = serializers.BooleanField(
        read_only=True,
        help_text="Answered from the response cache (params `cache`): no provider call, not charged (`cost` null).",
    )
    label = serializers.SerializerMethodField(  # type: ignore[assignment]
        help_text=(
            "The label the run was resolved through (`production` when it named neither a label nor a "
            "version and the prompt has one); null when it named a version, a version id or a model."
        )
    )
    split_arm = serializers.BooleanField(
        read_only=True,
        help_text="The label's A/B split picked the version (`version` is the arm); false with no split.",
    )
    split_key_hash = serializers.SerializerMethodField(
        help_text=(
            "A keyed hash (HMAC-SHA256) of the `split_key` given, the same for every run of that key; never "
            "the key. Null when none was given."
        )
    )

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
            "label",
            "split_arm",
            "split_key_hash",
            "execution",
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
            "attempt_log",
            "cached",
            "error",
            "idempotency_key",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_label(self, run: Run) -> str | None:
        return run.label or None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_split_key_hash(self, run: Run) -> str | None:
        return run.split_key_hash or None

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
