from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from llmops.parsers import json_loads
from llmops.schema import not_together
from llmops.serializers import StrictInputSerializer
from prompts import services as prompt_services
from runs import batch_selectors, batch_services
from runs.api.serializers import MAX_METADATA_KEYS, MAX_METADATA_VALUE, METADATA_SCHEMA
from runs.models import Batch
from runs.serializers import PromptVersionRefSerializer


@extend_schema_field(
    {
        "oneOf": [{"type": "string", "maxLength": batch_services.MAX_KEY_LENGTH}, {"type": "integer"}],
        "nullable": True,
    }
)
class _ItemKeyField(serializers.CharField):
    """Documentation only: a string or an integer; null or "" means the item's index."""


class BatchItemInputSerializer(StrictInputSerializer):
    """One inline item. A bad item is reported by its index, as `items.<index>.<field>`."""

    # Documentation only: rows are checked by runs.batch_files and batch_services.

    variables = serializers.DictField(required=False, help_text="The version's variables for this item.")
    key = _ItemKeyField(required=False, help_text="Unique in the batch; default: the item's index. Results carry it.")


@extend_schema_field(BatchItemInputSerializer(many=True))
class _ItemsField(serializers.ListField):
    """Items pass through as given: their shape and variables are checked row by row, by line."""

    child = serializers.JSONField()


class _JSONObjectField(serializers.JSONField):
    """A JSON object: a value of a JSON body, or JSON text in a multipart form, which is parsed with
    the API's bounds (no NUL, no lone surrogate, bounded depth) as a JSON body is."""

    def to_internal_value(self, data: Any) -> Any:
        if getattr(data, "is_json_string", False):
            try:
                data = json_loads(str(data))
            except ValueError as exc:
                raise serializers.ValidationError(f"Invalid JSON: {exc}") from None
        else:
            data = super().to_internal_value(data)
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be an object.")
        return data


@extend_schema_field(prompt_services.params_json_schema())
class _ParamsField(_JSONObjectField):
    pass


@extend_schema_field(METADATA_SCHEMA)
class _MetadataField(_JSONObjectField):
    pass


class _BooleanField(serializers.BooleanField):
    """`true` or `false`: a JSON boolean, or that text in a multipart form. DRF would also read `1`,
    `yes` or `on` from a form, values that the schema's boolean does not include."""

    def to_internal_value(self, data: Any) -> bool:
        if isinstance(data, str):
            if data not in ("true", "false"):
                self.fail("invalid", input=data)
            return data == "true"
        return super().to_internal_value(data)


class _BatchOptionsSerializer(StrictInputSerializer):
    json_schema_rules = [not_together("version", "label")]

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
    params = _ParamsField(required=False, default=dict, help_text="Overrides of the version's parameters.")
    skip_invalid = _BooleanField(
        default=False, help_text="Leave invalid rows out (listed in `skipped`) instead of refusing the batch."
    )
    name = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    metadata = _MetadataField(required=False, default=dict, help_text=f"String tags, at most {MAX_METADATA_KEYS}.")

    def validate_metadata(self, value: dict[str, Any]) -> dict[str, str]:
        if len(value) > MAX_METADATA_KEYS:
            raise serializers.ValidationError(f"At most {MAX_METADATA_KEYS} keys.")
        if not all(isinstance(v, str) and len(v) <= MAX_METADATA_VALUE for v in value.values()):
            raise serializers.ValidationError(f"Values must be strings of at most {MAX_METADATA_VALUE} characters.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "version" in attrs and "label" in attrs:
            raise serializers.ValidationError({"label": ["Give a version or a label, not both."]})
        return attrs


class BatchCreateSerializer(_BatchOptionsSerializer):
    """application/json: the items inline (bounded by DATA_UPLOAD_MAX_MEMORY_SIZE; upload a file for more)."""

    items = _ItemsField(allow_empty=False, max_length=settings.BATCH_MAX_ITEMS)


class BatchUploadSerializer(_BatchOptionsSerializer):
    """multipart/form-data: the items as a JSON Lines or CSV file; `params` and `metadata` as JSON text
    (form parts of type application/json)."""

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

    def to_internal_value(self, data: Any) -> Any:
        # DRF reads an empty form value of an optional field as "not given"; the schema (and a JSON
        # body) call it invalid, so it is refused here too rather than silently defaulted.
        if hasattr(data, "getlist"):
            empty = [
                name
                for name, field in self.fields.items()
                if data.get(name) == "" and not getattr(field, "allow_blank", False)
            ]
            if empty:
                raise serializers.ValidationError({name: ["Must not be empty."] for name in empty})
        return super().to_internal_value(data)


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
