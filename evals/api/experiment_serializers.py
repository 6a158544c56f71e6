import re
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from evals import experiment_services, stats
from evals.models import Experiment, LabelGate
from evals.scorers.registry import scorer_classes
from llmops.serializers import StrictInputSerializer
from prompts import services as prompt_services
from prompts.models import LATEST_LABEL
from runs import batch_services

_LABEL = re.compile(r"[-a-zA-Z0-9_]{1,50}")
_NUMBER = {"type": "number", "minimum": 0, "maximum": 1}


@extend_schema_field(
    {
        "oneOf": [
            {"type": "integer", "minimum": 1},
            {"type": "string", "pattern": r"^[-a-zA-Z0-9_]+$", "maxLength": 50},
        ],
        "description": "A version number, or a label (resolved when the experiment is created).",
    }
)
class VersionRefField(serializers.Field):
    default_error_messages = {"invalid": "A version number (from 1) or a label."}

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("invalid")
        if isinstance(data, int):
            if data < 1:
                self.fail("invalid")
            return data
        if not _LABEL.fullmatch(data):
            self.fail("invalid")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


def _scorer_spec_schema() -> dict[str, Any]:
    names = sorted(scorer_classes())
    return {
        "oneOf": [
            {"type": "string", "enum": names},
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "enum": names},
                    "options": {"type": "object", "description": "The scorer's options (GET /api/v1/scorers)."},
                    "threshold": {**_NUMBER, "description": "Pass when the value is at least this."},
                },
                "required": ["name"],
                "additionalProperties": False,
            },
        ],
        "description": "A scorer's name, or {name, options, threshold}.",
    }


@extend_schema_field(_scorer_spec_schema())
class ScorerSpecField(serializers.JSONField):
    """Checked by evals.scorers.registry.scorer_specs_check (field errors `scorers.<index>.<field>`)."""


@extend_schema_field(prompt_services.params_json_schema())
class ParamsField(serializers.JSONField):
    def to_internal_value(self, data: Any) -> Any:
        data = super().to_internal_value(data)
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be an object.")
        return data


class ExperimentCreateSerializer(StrictInputSerializer):
    prompt = serializers.CharField(max_length=100, help_text="The prompt's id or name.")
    dataset = serializers.CharField(max_length=100, help_text="The dataset's id or name.")
    dataset_version = serializers.IntegerField(
        min_value=1, required=False, help_text="A version number of the dataset; default its latest."
    )
    versions = serializers.ListField(
        child=VersionRefField(),
        allow_empty=False,
        max_length=experiment_services.MAX_ARMS,
        help_text="The prompt versions to run (numbers or labels); the first is the baseline.",
    )
    scorers = serializers.ListField(child=ScorerSpecField(), allow_empty=False, help_text="How to score each output.")
    params = ParamsField(required=False, default=dict, help_text="Overrides of the versions' parameters.")
    concurrency = serializers.IntegerField(
        min_value=batch_services.MIN_CONCURRENCY,
        max_value=batch_services.MAX_CONCURRENCY,
        default=batch_services.DEFAULT_CONCURRENCY,
        help_text="Most runs in flight at once, per version.",
    )
    name = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)


# --- the summary (Experiment.summary), documented field by field --------------------------------


class _TokensSerializer(serializers.Serializer):
    prompt = serializers.IntegerField()
    completion = serializers.IntegerField()
    total = serializers.IntegerField()


class _LatencySerializer(serializers.Serializer):
    p50 = serializers.IntegerField(allow_null=True, help_text="Nearest-rank, over the succeeded runs.")
    p95 = serializers.IntegerField(allow_null=True)


class _ScoreStatsSerializer(serializers.Serializer):
    mean = serializers.FloatField(allow_null=True)
    median = serializers.FloatField(allow_null=True)
    pass_rate = serializers.FloatField(allow_null=True)
    count = serializers.IntegerField(help_text="Examples scored.")
    errors = serializers.IntegerField(  # type: ignore[assignment]
        help_text="Examples not scored: the run failed, or the scorer could not."
    )


class _ArmSummarySerializer(serializers.Serializer):
    position = serializers.IntegerField(help_text="0 is the baseline.")
    ref = serializers.CharField(help_text="The version as requested.")
    version = serializers.IntegerField()
    runs = serializers.IntegerField(help_text="One per example.")
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Did not succeed (failed, or refused when dispatched).")
    tokens = _TokensSerializer()
    cost = serializers.CharField(help_text="Decimal string: the cost entries of the arm's runs.")
    latency_ms = _LatencySerializer()
    scores = serializers.DictField(child=_ScoreStatsSerializer(), help_text="By scorer name.")


class _ComparisonSerializer(serializers.Serializer):
    baseline = serializers.IntegerField()
    candidate = serializers.IntegerField()
    scorer = serializers.CharField()
    better = serializers.IntegerField(help_text="Examples the candidate scored higher.")
    worse = serializers.IntegerField()
    same = serializers.IntegerField()
    mean_delta = serializers.FloatField(allow_null=True, help_text="Mean of candidate - baseline per example.")
    p_value = serializers.FloatField(help_text="Exact two-sided sign test, ties dropped.")
    verdict = serializers.ChoiceField(
        choices=[stats.BETTER, stats.WORSE, stats.NO_DIFFERENCE], help_text=f"At alpha {stats.ALPHA}."
    )


class ExperimentSummarySerializer(serializers.Serializer):
    dataset_version = serializers.IntegerField()
    example_count = serializers.IntegerField()
    arms = _ArmSummarySerializer(many=True)
    comparisons = _ComparisonSerializer(many=True)


@extend_schema_field(ExperimentSummarySerializer(allow_null=True))
class _SummaryField(serializers.JSONField):
    def to_representation(self, value: Any) -> Any:
        return value or None


class ExperimentArmSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    ref = serializers.CharField()
    version = serializers.IntegerField(source="prompt_version.number")
    prompt_version_id = serializers.UUIDField()
    batch_id = serializers.UUIDField(allow_null=True)
    batch_status = serializers.CharField(source="batch.status", allow_null=True, default=None)


class ExperimentSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    prompt_name = serializers.CharField(source="prompt.name")
    dataset_name = serializers.CharField(source="dataset.name")
    dataset_version = serializers.IntegerField(source="dataset_version.number")
    arms = ExperimentArmSerializer(many=True)
    summary = _SummaryField(help_text="The results, once completed; null before.")
    scorers = serializers.JSONField(help_text="The scorer specs, normalized: {name, options, threshold}.")
    params = serializers.JSONField()

    class Meta:
        model = Experiment
        fields = [
            "id",
            "url",
            "name",
            "status",
            "error_message",
            "prompt",
            "prompt_name",
            "dataset",
            "dataset_name",
            "dataset_version",
            "scorers",
            "params",
            "concurrency",
            "arms",
            "summary",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_url(self, experiment: Experiment) -> str:
        request = self.context.get("request")
        path = f"/api/v1/experiments/{experiment.pk}"
        return request.build_absolute_uri(path) if request is not None else path


class ExperimentFilterSerializer(serializers.Serializer):
    prompt = serializers.CharField(required=False, max_length=100, help_text="Only this prompt's (id or name).")


class _RowScoreSerializer(serializers.Serializer):
    value = serializers.FloatField(allow_null=True)
    passed = serializers.BooleanField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_blank=True)


class _RowExampleSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    position = serializers.IntegerField()
    variables = serializers.JSONField()
    expected_output = serializers.CharField(allow_blank=True)


class _RowArmSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    run_id = serializers.UUIDField(allow_null=True)
    status = serializers.CharField(help_text="The run's status; `pending` before it exists, `failed` if refused.")
    output = serializers.CharField(allow_null=True, allow_blank=True)
    scores = serializers.DictField(child=_RowScoreSerializer(), help_text="By scorer name.")


class ExampleRowSerializer(serializers.Serializer):
    example = _RowExampleSerializer()
    arms = _RowArmSerializer(many=True)


class CompareQuerySerializer(serializers.Serializer):
    baseline = serializers.IntegerField(min_value=0, default=0, help_text="An arm's position; default 0.")
    candidate = serializers.IntegerField(min_value=0, help_text="An arm's position.")
    scorer = serializers.CharField(max_length=100, help_text="A scorer of the experiment.")


class _ComparedExampleSerializer(serializers.Serializer):
    example_id = serializers.UUIDField()
    position = serializers.IntegerField()
    baseline = serializers.FloatField()
    candidate = serializers.FloatField()


class CompareSerializer(serializers.Serializer):
    baseline = serializers.IntegerField()
    candidate = serializers.IntegerField()
    scorer = serializers.CharField()
    better = _ComparedExampleSerializer(many=True)
    worse = _ComparedExampleSerializer(many=True)
    same = _ComparedExampleSerializer(many=True)
    mean_delta = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField(help_text="Exact two-sided sign test over the examples both scored.")
    verdict = serializers.ChoiceField(choices=[stats.BETTER, stats.WORSE, stats.NO_DIFFERENCE])


# --- gates ----------------------------------------------------------------------------------


class LabelGateCreateSerializer(StrictInputSerializer):
    label = serializers.RegexField(  # type: ignore[assignment]
        rf"^(?!{LATEST_LABEL}$)[-a-zA-Z0-9_]+$", max_length=50, help_text="The label to gate (not `latest`)."
    )
    dataset = serializers.CharField(max_length=100, help_text="The dataset's id or name; its latest version counts.")
    scorer = serializers.ChoiceField(choices=sorted(scorer_classes()), help_text="The scorer whose mean counts.")
    threshold = serializers.FloatField(min_value=0, max_value=1, help_text="The least mean score to move the label.")


class LabelGateSerializer(serializers.ModelSerializer):
    dataset_name = serializers.CharField(source="dataset.name")
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)

    class Meta:
        model = LabelGate
        fields = ["label", "dataset", "dataset_name", "scorer", "threshold", "created_by", "created_at", "updated_at"]
        read_only_fields = fields
