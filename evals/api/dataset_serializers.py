from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from evals import dataset_services
from evals.models import Dataset, DatasetVersion, Example
from llmops.serializers import StrictInputSerializer

_TAG_SCHEMA = {"type": "string", "minLength": 1, "maxLength": dataset_services.MAX_TAG_LENGTH}


@extend_schema_field(_TAG_SCHEMA)
class _TagField(serializers.CharField):
    """Documentation only: a tag, kept as given (not trimmed)."""


def _tags_field(**kwargs: Any) -> serializers.ListField:
    return serializers.ListField(
        child=_TagField(trim_whitespace=False, max_length=dataset_services.MAX_TAG_LENGTH),
        max_length=dataset_services.MAX_TAGS,
        **kwargs,
    )


class ExampleInputSerializer(StrictInputSerializer):
    """One example to append. A bad example is reported by its index, as `examples.<index>.<field>`."""

    # Documentation only: rows are checked by evals.dataset_services.example_row_check.

    variables = serializers.DictField(required=False, help_text="The prompt's variables for this example.")
    expected_output = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    reference = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, help_text="Reference notes, e.g. for a judge."
    )
    tags = _tags_field(required=False)


@extend_schema_field(ExampleInputSerializer(many=True))
class _ExamplesField(serializers.ListField):
    """Examples pass through as given: their shape is checked row by row, by index."""

    child = serializers.JSONField()


class DatasetCreateSerializer(StrictInputSerializer):
    name = serializers.SlugField(max_length=dataset_services.MAX_NAME_LENGTH, help_text="Unique in the project.")
    description = serializers.CharField(
        max_length=dataset_services.MAX_DESCRIPTION_LENGTH, required=False, default="", allow_blank=True
    )


class DatasetUpdateSerializer(StrictInputSerializer):
    description = serializers.CharField(
        max_length=dataset_services.MAX_DESCRIPTION_LENGTH,
        required=False,
        allow_blank=True,
        help_text="Left out: unchanged.",
    )


class ExamplesAppendSerializer(StrictInputSerializer):
    """application/json: the examples inline (bounded by DATA_UPLOAD_MAX_MEMORY_SIZE; import a file for more)."""

    examples = _ExamplesField(allow_empty=False, max_length=dataset_services.MAX_EXAMPLES_PER_APPEND)
    note = serializers.CharField(
        max_length=dataset_services.MAX_NOTE_LENGTH,
        required=False,
        default="",
        allow_blank=True,
        help_text="What this version changed.",
    )


class ExamplesRemoveSerializer(StrictInputSerializer):
    ids = serializers.ListField(
        child=serializers.UUIDField(),
        allow_empty=False,
        max_length=dataset_services.MAX_REMOVED_PER_CALL,
        help_text="Ids of examples of the latest version.",
    )
    note = serializers.CharField(
        max_length=dataset_services.MAX_NOTE_LENGTH, required=False, default="", allow_blank=True
    )


class ExampleFromRunSerializer(StrictInputSerializer):
    run = serializers.UUIDField(help_text="A succeeded run of this project.")
    expected_output = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, help_text="Default: the run's output."
    )
    reference = serializers.CharField(required=False, default="", allow_blank=True, trim_whitespace=False)
    tags = _tags_field(required=False, default=list)


class DatasetImportSerializer(StrictInputSerializer):
    """multipart/form-data: the examples as a JSON Lines or CSV file."""

    file = serializers.FileField(
        help_text=(
            "JSON Lines (one example object per line: `variables`, `expected_output`, `reference`, `tags`) or CSV "
            "(a header row of `expected_output`, `reference`, `tags` (a JSON array or comma-separated), `variables` "
            "(a JSON object) and `var.<name>` columns; an empty cell means not given). An export imports as it is "
            "(its `id` and `position` are ignored). Bad rows are reported by line: `examples.<line>.<field>`."
        )
    )
    format = serializers.ChoiceField(
        choices=["jsonl", "csv"], required=False, help_text="Default: `csv` for a .csv file name, else `jsonl`."
    )
    note = serializers.CharField(
        max_length=dataset_services.MAX_NOTE_LENGTH, required=False, default="", allow_blank=True
    )

    def to_internal_value(self, data: Any) -> Any:
        # DRF reads an empty form value of an optional field as "not given"; the schema calls it invalid.
        if hasattr(data, "getlist"):
            empty = [
                name
                for name, field in self.fields.items()
                if data.get(name) == "" and not getattr(field, "allow_blank", False)
            ]
            if empty:
                raise serializers.ValidationError({name: ["Must not be empty."] for name in empty})
        return super().to_internal_value(data)


class VersionQuerySerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, required=False, help_text="Default: the latest version.")


class ExportQuerySerializer(VersionQuerySerializer):
    pass


class DatasetSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    latest_version = serializers.IntegerField(source="latest_version_number", read_only=True)
    example_count = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)

    class Meta:
        model = Dataset
        fields = ["id", "url", "name", "description", "latest_version", "example_count", "created_by", "created_at"]
        read_only_fields = fields

    def get_url(self, dataset: Dataset) -> str:
        path = f"/api/v1/datasets/{dataset.name}"
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    def get_example_count(self, dataset: Dataset) -> int:
        """Examples in the latest version."""
        return int(getattr(dataset, "example_count", 0) or 0)


class DatasetVersionSerializer(serializers.ModelSerializer):
    dataset = serializers.UUIDField(source="dataset_id", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)

    class Meta:
        model = DatasetVersion
        fields = [
            "dataset",
            "number",
            "example_count",
            "added_count",
            "removed_count",
            "note",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields


class ExampleSerializer(serializers.ModelSerializer):
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)
    source_run = serializers.UUIDField(source="source_run_id", read_only=True, allow_null=True)

    class Meta:
        model = Example
        fields = [
            "id",
            "position",
            "variables",
            "expected_output",
            "reference",
            "tags",
            "added_in",
            "removed_in",
            "source_run",
            "created_at",
        ]
        read_only_fields = fields


class ExampleCreatedSerializer(serializers.Serializer):
    version = DatasetVersionSerializer(read_only=True)
    example = ExampleSerializer(read_only=True)


class ExportLineSerializer(serializers.Serializer):
    """One line of the JSON Lines export (a CSV row has the same columns)."""

    id = serializers.UUIDField()
    position = serializers.IntegerField()
    variables = serializers.DictField()
    expected_output = serializers.CharField()
    reference = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
