from datetime import datetime
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.models import Budget, CostLog
from billing.selectors import GROUPINGS, budget_window
from llmops.serializers import StrictInputSerializer


class CostSummaryQuerySerializer(serializers.Serializer):
    # `from` is a Python keyword, so the field is declared under another name and renamed below.
    from_ = serializers.DateTimeField(required=False, help_text="Inclusive start (ISO 8601).")
    to = serializers.DateTimeField(required=False, help_text="Exclusive end (ISO 8601).")
    group_by = serializers.ChoiceField(
        choices=list(GROUPINGS),
        default="day",
        help_text=(
            "`version` groups by prompt version (`<prompt> v<number>`): the arms of a label's A/B split "
            "compared on runs, tokens and cost."
        ),
    )

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "from" in attrs and "to" in attrs and attrs["from"] >= attrs["to"]:
            raise serializers.ValidationError({"to": ["Must be after `from`."]})
        return attrs


class CostGroupSerializer(serializers.Serializer):
    group = serializers.CharField(
        allow_null=True, help_text="The day, model, provider, prompt name, `<prompt> v<number>`, key prefix or member."
    )
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


class BudgetSerializer(serializers.ModelSerializer):
    """A budget with its usage in the current window (computed when read)."""

    api_key = serializers.UUIDField(
        source="api_key_id", read_only=True, allow_null=True, help_text="Null: project-wide."
    )
    api_key_prefix = serializers.CharField(source="api_key.prefix", read_only=True, default=None, allow_null=True)
    currency = serializers.SerializerMethodField()
    spent = serializers.DecimalField(
        max_digits=18, decimal_places=10, read_only=True, help_text="Known costs in the current window."
    )
    reserved = serializers.DecimalField(
        max_digits=18, decimal_places=10, read_only=True, help_text="Maximum cost of runs not finished yet."
    )
    remaining = serializers.SerializerMethodField()
    window_started_at = serializers.SerializerMethodField()
    resets_at = serializers.SerializerMethodField()

    class Meta:
        model = Budget
        fields = [
            "id",
            "api_key",
            "api_key_prefix",
            "amount",
            "currency",
            "window",
            "spent",
            "reserved",
            "remaining",
            "window_started_at",
            "resets_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_currency(self, budget: Budget) -> str:
        return "USD"

    @extend_schema_field(
        serializers.DecimalField(
            max_digits=18, decimal_places=10, help_text="amount - spent - reserved; negative when overspent."
        )
    )
    def get_remaining(self, budget: Budget) -> str:
        remaining = budget.amount - budget.spent - budget.reserved  # type: ignore[attr-defined]
        return serializers.DecimalField(max_digits=18, decimal_places=10).to_representation(remaining)

    def _window(self, budget: Budget) -> tuple[datetime | None, datetime | None]:
        return budget_window(window=budget.window, now=self.context["now"])

    @extend_schema_field(serializers.DateTimeField(allow_null=True, help_text="Null: no window (lifetime)."))
    def get_window_started_at(self, budget: Budget) -> str | None:
        start, _ = self._window(budget)
        return serializers.DateTimeField().to_representation(start) if start else None

    @extend_schema_field(serializers.DateTimeField(allow_null=True, help_text="Null: never resets."))
    def get_resets_at(self, budget: Budget) -> str | None:
        _, end = self._window(budget)
        return serializers.DateTimeField().to_representation(end) if end else None


class BudgetCreateSerializer(StrictInputSerializer):
    amount = serializers.DecimalField(max_digits=14, decimal_places=6, min_value=Decimal(0), help_text="USD.")
    window = serializers.ChoiceField(choices=Budget.Window.choices)
    api_key = serializers.UUIDField(
        required=False, allow_null=True, help_text="Id of one of the project's keys; omitted or null: project-wide."
    )


class BudgetUpdateSerializer(StrictInputSerializer):
    amount = serializers.DecimalField(
        max_digits=14, decimal_places=6, min_value=Decimal(0), required=False, help_text="USD."
    )
    window = serializers.ChoiceField(choices=Budget.Window.choices, required=False)
