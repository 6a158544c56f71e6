from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from llmops.serializers import StrictInputSerializer
from runs import batch_selectors, batch_services
from runs.api.serializers import MAX_METADATA_KEYS
from runs.models import Batch
from runs.serializers import PromptVersionRefSerializer


class BatchItemInputSerializer(serializers.Serializer):
    """One inline item (documentation only: rows are checked by runs.batches, which reports each bad
    one by its index as `items.<index>.<field>`)."""

    variables = serializers.DictField(required=False, help_text="The version's variables for this item.")
    key = serializers.CharField(
        required=False,
        max_length=batch_services.MAX_KEY_LENGTH,
        help_text="Unique in the batch; default: the item's index. Results carry it.",
    )


@extend_schema_field(BatchItemInputSerializer(many=True))
class _ItemsField(serializers.ListField):
    """Items pass through as given: their shape and variables are checked row by row, by line."""

    child = serializers.JSONField()


class _BatchOptionsSerializer(StrictInputSerializer):
    prompt = serializers.CharField(max_length=100, help_text="The prompt's id or name.")
    version = serializers.IntegerField(min_value=1, required=False)
    label = serializers.SlugField(  # type: ignore[assignment]
        max_length=50,
        required=False,
        help_text="Resolved once, when the batch is created. Default: `production` if set, else latest.",
    )
    concurrency = serializers.IntegerField(
        min_value=batch_services.MIN_CONCURRENCY,
        max_value=batch_services.MAX_CONCURRENCY,
        default=batch_services.DEFAULT_CONCURRENCY,
        help_text="Most runs of this batch in flight at once.",
    )
    params = serializers.JSONField(
        required=False, default=dict, help_text="Overrides of the version's parameters (an object)."
    )
    skip_invalid = serializers.BooleanField(
        default=False, help_text="Leave invalid rows out (listed in `skipped`) instead of refusing the batch."
    )
    name = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    metadata = serializers.JSONField(
        required=False, default=dict, help_text=f"String tags, at most {MAX_METADATA_KEYS}."
    )

    def validate_metadata(self, value: Any) -> dict[str, str]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be an object.")
        if len(value) > MAX_METADATA_KEYS:
            raise serializers.ValidationError(f"At most {MAX_METADATA_KEYS} keys.")
        if not all(isinstance(v, str) and len(v) <= 500 for v in value.values()):
            raise serializers.ValidationError("Values must be strings of at most 500 characters.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "version" in attrs and "label" in attrs:
            raise serializers.ValidationError({"label": ["Give a version or a label, not both."]})
        return attrs


class BatchCreateSerializer(_BatchOptionsSerializer):
    """application/json: the items inline (bounded by DATA_UPLOAD_MAX_MEMORY_SIZE; upload a file for more)."""

    items = _ItemsField(allow_empty=False, max_length=settings.BATCH_MAX_ITEMS)


class BatchUploadSerializer(_BatchOptionsSerializer):
    """multipart/form-data: the items as a JSON Lines or CSV file; `params` and `metadata` as JSON text."""

    file = serializers.FileField(
        help_text=(
            'JSON Lines (each line `{"variables": {...}, "key": ...}` or a bare variables object) or CSV '
            "(a header row of variable names plus an optional `key` column; an empty cell means not given). "
            "Bad rows are reported by line number: `items.<line>.<field>`."
        )
    )
    format = serializers.ChoiceField(
        choices=["jsonl", "csv"], required=False, help_text="Default: `csv` for a .csv file name, else `jsonl`."
    )


class BatchCountsSerializer(serializers.Serializer):
    pending = serializers.IntegerField(help_text="Not dispatched yet.")
    queued = serializers.IntegerField()
    running = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField(help_text="Includes items refused at dispatch (e.g. budget_exceeded).")
    canceled = serializers.IntegerField()


class BatchCostSerializer(serializers.Serializer):
    amount = serializers.DecimalField(max_digits=18, decimal_places=10)
    currency = serializers.CharField()
    unknown_cost_runs = serializers.IntegerField(help_text="Succeeded runs whose model has no known price.")


class BatchUsageSerializer(serializers.Serializer):
    total_tokens = serializers.IntegerField()


class BatchSerializer(PromptVersionRefSerializer):
    url = serializers.SerializerMethodField()
    results_url = serializers.SerializerMethodField()
    counts = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()
    cost = serializers.SerializerMethodField()

    class Meta:
        model = Batch
        fields = [
            "id",
            "url",
            "results_url",
            "name",
            "status",
            "prompt",
            "prompt_name",
            "version",
            "prompt_version_id",
            "params",
            "metadata",
            "concurrency",
            "item_count",
            "skipped_count",
            "counts",
            "usage",
            "cost",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    def get_url(self, batch: Batch) -> str:
        return self._absolute(f"/api/v1/batches/{batch.pk}")

    def get_results_url(self, batch: Batch) -> str:
        return self._absolute(f"/api/v1/batches/{batch.pk}/results")

    def _progress(self, batch: Batch) -> dict[str, Any]:
        cached: dict[str, Any] | None = getattr(batch, "_progress_cache", None)
        if cached is None:
            cached = batch_selectors.batch_progress(batch)
            batch._progress_cache = cached  # type: ignore[attr-defined]
        return cached

    @extend_schema_field(BatchCountsSerializer)
    def get_counts(self, batch: Batch) -> dict[str, int]:
        return dict(self._progress(batch)["counts"])

    @extend_schema_field(BatchUsageSerializer)
    def get_usage(self, batch: Batch) -> dict[str, int]:
        return {"total_tokens": self._progress(batch)["total_tokens"]}

    @extend_schema_field(BatchCostSerializer)
    def get_cost(self, batch: Batch) -> dict[str, Any]:
        progress = self._progress(batch)
        # Through the serializer so money stays a decimal string, never a float.
        return BatchCostSerializer(
            {"amount": progress["total_cost"], "currency": "USD", "unknown_cost_runs": progress["unknown_cost_runs"]}
        ).data


class SkippedRowSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="Line of the file, or index of the inline item.")
    key = serializers.CharField(allow_null=True)
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()), help_text="As in an error's `fields`."
    )


class BatchCreatedSerializer(BatchSerializer):
    skipped = SkippedRowSerializer(
        many=True, read_only=True, help_text="Rows left out by skip_invalid (the first ones; see skipped_count)."
    )

    class Meta(BatchSerializer.Meta):
        fields = [*BatchSerializer.Meta.fields, "skipped"]
        read_only_fields = fields


class BatchFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(required=False, choices=Batch.Status.choices)


class BatchResultSerializer(serializers.Serializer):
    """One line of the JSON Lines export (and of `manage.py batch_run`'s output file)."""

    key = serializers.CharField()
    line = serializers.IntegerField()
    status = serializers.ChoiceField(choices=list(batch_selectors.ITEM_STATUSES))
    variables = serializers.DictField()
    output = serializers.CharField(allow_null=True)
    usage = serializers.DictField(child=serializers.IntegerField(allow_null=True), allow_null=True)
    cost = serializers.DecimalField(max_digits=18, decimal_places=10, allow_null=True)
    latency_ms = serializers.IntegerField(allow_null=True)
    error = serializers.DictField(child=serializers.CharField(), allow_null=True)
    run_id = serializers.UUIDField(allow_null=True)
