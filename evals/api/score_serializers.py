from typing import Any

from rest_framework import serializers

from evals.models import Score
from evals.score_services import MAX_SCORE_NAME, MAX_SCORE_REASON
from llmops.serializers import StrictInputSerializer
from prompts.api.serializers import SplitArmSerializer


class ScoreCreateSerializer(StrictInputSerializer):
    name = serializers.CharField(
        max_length=MAX_SCORE_NAME, help_text="What is scored, e.g. `helpful` or `thumbs_up`: your own name for it."
    )
    value = serializers.FloatField(min_value=0, max_value=1, help_text="From 0 (worst) to 1 (best).")
    reason = serializers.CharField(
        max_length=MAX_SCORE_REASON, required=False, default="", allow_blank=True, trim_whitespace=False
    )


class ScoreSerializer(serializers.ModelSerializer):
    run = serializers.UUIDField(source="run_id", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None, allow_null=True)

    class Meta:
        model = Score
        fields = ["id", "run", "name", "value", "reason", "source", "created_by", "created_at"]
        read_only_fields = fields


class ScoreListSerializer(serializers.Serializer):
    scores = ScoreSerializer(many=True, help_text="Newest first: a client's (`api`) and experiments' scores.")


class SplitReportQuerySerializer(serializers.Serializer):
    # `from` is a Python keyword, so the field is declared under another name and renamed below.
    from_ = serializers.DateTimeField(required=False, help_text="Runs created at or after (ISO 8601).")
    to = serializers.DateTimeField(required=False, help_text="Runs created before (ISO 8601).")

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "from" in attrs and "to" in attrs and attrs["from"] >= attrs["to"]:
            raise serializers.ValidationError({"to": ["Must be after `from`."]})
        return attrs


class _ArmTokensSerializer(serializers.Serializer):
    sum = serializers.IntegerField()
    mean = serializers.FloatField(allow_null=True, help_text="Per run that has a count; null with none.")


class _ArmCostSerializer(serializers.Serializer):
    sum = serializers.DecimalField(max_digits=18, decimal_places=10, help_text="Sum of known costs.")
    unknown_cost_runs = serializers.IntegerField(help_text="Runs whose model has no known price.")


class _ArmLatencySerializer(serializers.Serializer):
    p50 = serializers.IntegerField(allow_null=True)
    p95 = serializers.IntegerField(allow_null=True)


class _ArmScoreSerializer(serializers.Serializer):
    name = serializers.CharField()
    mean = serializers.FloatField()
    count = serializers.IntegerField()


class SplitArmReportSerializer(serializers.Serializer):
    version = serializers.IntegerField(help_text="The version the arm's runs executed.")
    weight = serializers.IntegerField(allow_null=True, help_text="Its weight in the current split; null: not in it.")
    runs = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    tokens = _ArmTokensSerializer(help_text="Total tokens (prompt + completion).")
    cost = _ArmCostSerializer()
    latency_ms = _ArmLatencySerializer(help_text="Nearest-rank percentiles of runs that called a provider.")
    scores = _ArmScoreSerializer(many=True, help_text="Per score name given to the arm's runs: mean and count.")


class _ReportPromptSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()


class SplitReportSerializer(serializers.Serializer):
    # `from` is a Python keyword: declared under another name and renamed, as in the query.
    prompt = _ReportPromptSerializer()
    label = serializers.CharField()  # type: ignore[assignment]
    version = serializers.IntegerField(help_text="The label's main version.")
    split = SplitArmSerializer(many=True, help_text="The label's current split ([] for none).")
    from_ = serializers.DateTimeField(allow_null=True)
    to = serializers.DateTimeField(allow_null=True)
    currency = serializers.CharField()
    arms = SplitArmReportSerializer(many=True, help_text="The runs made through the label, per version.")

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields
