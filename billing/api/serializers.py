from typing import Any

from rest_framework import serializers

from billing.models import CostLog
from billing.selectors import GROUPINGS


class CostSummaryQuerySerializer(serializers.Serializer):
    # `from` is a Python keyword, so the field is declared under another name and renamed below.
    from_ = serializers.DateTimeField(required=False, help_text="Inclusive start (ISO 8601).")
    to = serializers.DateTimeField(required=False, help_text="Exclusive end (ISO 8601).")
    group_by = serializers.ChoiceField(choices=list(GROUPINGS), default="day")

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "from" in attrs and "to" in attrs and attrs["from"] >= attrs["to"]:
            raise serializers.ValidationError({"to": ["Must be after `from`."]})
        return attrs


class CostGroupSerializer(serializers.Serializer):
    group = serializers.CharField(allow_null=True, help_text="The day, model, provider, prompt name or key prefix.")
    runs = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=18, decimal_places=10, help_text="Sum of known costs.")
    unknown_cost_runs = serializers.IntegerField(help_text="Runs whose model has no known price.")


class CostTotalSerializer(serializers.Serializer):
    runs = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=18, decimal_places=10)
    unknown_cost_runs = serializers.IntegerField()


class CostSummarySerializer(serializers.Serializer):
    group_by = serializers.CharField()
    currency = serializers.CharField()
    groups = CostGroupSerializer(many=True)
    total = CostTotalSerializer()


class CostLogSerializer(serializers.ModelSerializer):
    run = serializers.UUIDField(source="run_id", read_only=True)
    api_key = serializers.CharField(source="api_key.prefix", read_only=True, default=None)

    class Meta:
        model = CostLog
        fields = [
            "id",
            "run",
            "api_key",
            "provider",
            "model",
            "prompt_tokens",
            "completion_tokens",
            "tokens_estimated",
            "input_cost",
            "output_cost",
            "total_cost",
            "currency",
            "cost_known",
            "created_at",
        ]
        read_only_fields = fields
