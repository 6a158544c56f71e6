"""Serializer base classes shared by the apps' APIs."""

from typing import Any

from rest_framework import serializers
from rest_framework.settings import api_settings

_STRING_FIELDS = (
    serializers.CharField,
    serializers.UUIDField,
    serializers.DateTimeField,
    serializers.DateField,
    serializers.TimeField,
    serializers.DurationField,
)


def _json_type_problem(field: serializers.Field, value: Any) -> str | None:
    """Why `value`, as parsed from JSON, is not of the type the schema gives `field`; None if it is.

    DRF converts where JSON Schema does not: 462 into "462" for a string, "5" or 5.0 into 5 for an
    integer, "yes" or 1 into True for a boolean. Fields of other kinds check their own input.
    """
    if value is None:
        return None  # allow_null is the field's own business
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Must be a boolean."
    if isinstance(field, serializers.IntegerField):
        return None if type(value) is int else "Must be an integer."
    if isinstance(field, serializers.FloatField):
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "Must be a number."
    if isinstance(field, serializers.DecimalField):
        coerce = getattr(field, "coerce_to_string", api_settings.COERCE_DECIMAL_TO_STRING)
        # Documented as a decimal string (money is never a float).
        return None if not coerce or isinstance(value, str) else "Must be a decimal number as a string."
    if isinstance(field, _STRING_FIELDS):
        if not isinstance(value, str):
            return "Must be a string."
        # The schema's maxLength counts the value as sent; DRF would count it after trimming its
        # whitespace, and so take a longer value than the schema allows (found by Schemathesis).
        max_length = getattr(field, "max_length", None)
        if max_length is not None and len(value) > max_length:
            return f"Ensure this field has no more than {max_length} characters."
        return None
    if isinstance(field, serializers.ChoiceField) and all(isinstance(choice, str) for choice in field.choices):
        return None if isinstance(value, str) else "Must be a string."
    if isinstance(field, serializers.ListField) and isinstance(value, list):
        return next(filter(None, (_json_type_problem(field.child, item) for item in value)), None)
    if isinstance(field, serializers.DictField) and isinstance(value, dict):
        return next(filter(None, (_json_type_problem(field.child, item) for item in value.values())), None)
    return None


# The base classes' docs are comments, not docstrings: drf-spectacular describes a component with the
# first docstring up its class tree, and these are for this code's readers, not the API's.


# Takes a JSON body's values only in the types its schema documents (see _json_type_problem). Form and
# query data (a QueryDict: every value a string) are left to DRF's conversions.
class TypedInputSerializer(serializers.Serializer):
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and not hasattr(data, "getlist"):
            wrong = {
                name: [problem]
                for name, field in self.fields.items()
                if not field.read_only and name in data and (problem := _json_type_problem(field, data[name]))
            }
            if wrong:
                raise serializers.ValidationError(wrong)
        return super().to_internal_value(data)


# Rejects fields it does not know, so a typo is a 400 instead of a silently ignored value.
class StrictInputSerializer(TypedInputSerializer):
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = set(data) - set(self.fields)
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
        return super().to_internal_value(data)
