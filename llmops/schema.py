"""OpenAPI generation: every operation documents the error responses it can return and the key scope it needs,
and every request schema states the rules the server enforces that JSON Schema can state."""

import copy
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from jsonschema import Draft202012Validator
from rest_framework import permissions, serializers
from rest_framework.settings import api_settings

from llmops.serializers import StrictInputSerializer

# Request rules as patterns. The API's JSON parser refuses NUL in any string or key (llmops.parsers),
# and so does DRF's CharField in form and query data. (OpenAPI 3.0 has no `propertyNames`: the keys
# of a free-form object cannot be constrained, so "no NUL in a key" is the one rule not stated.)
NUL_FREE = r"^[^\u0000]*$"
# What DRF's trimming (str.strip) removes: the str.isspace() characters, a set ECMA's \s does not match.
_SPACE = r"\t\n\u000b\f\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# A trimmed CharField that must not be blank: something besides whitespace.
NON_BLANK = rf"^[^\u0000]*[^\u0000{_SPACE}][^\u0000]*$"

JSON_VALUE = "JSONValue"
_JSON_VALUE_SCHEMA = {
    # No `type`: any JSON value; each keyword below constrains only the values of its own type.
    "description": "Any JSON value. Its strings, and its objects' keys, hold no NUL (\\u0000).",
    "nullable": True,
    "pattern": NUL_FREE,
    "additionalProperties": {"$ref": f"#/components/schemas/{JSON_VALUE}"},
    "items": {"$ref": f"#/components/schemas/{JSON_VALUE}"},
}
# Keywords that make a schema more than "any value".
_SHAPING = {"type", "$ref", "oneOf", "anyOf", "allOf", "not", "enum", "properties", "items"}


def exactly_one_of(*names: str) -> dict[str, Any]:
    """A serializer's `json_schema_rules` entry: exactly one of these fields is given."""
    return {"oneOf": [{"required": [name]} for name in names]}


def not_together(*names: str) -> dict[str, Any]:
    """A serializer's `json_schema_rules` entry: these fields are not all given at once."""
    return {"not": {"required": list(names)}}


def _types(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type", [])
    return {declared} if isinstance(declared, str) else set(declared)


def _decimal_pattern(field: serializers.DecimalField) -> str:
    """The decimal strings DecimalField.validate_precision takes: at most max_whole_digits before the
    point (leading zeros do not count) and decimal_places after it; a sign only if negatives are allowed."""
    sign = "" if field.min_value is not None and Decimal(field.min_value) >= 0 else "-?"
    if field.max_whole_digits is None:
        whole = r"\d+"
    elif field.max_whole_digits == 0:
        whole = "0"
    else:
        whole = rf"\d{{1,{field.max_whole_digits}}}"
    if field.decimal_places == 0:
        return rf"^{sign}0*{whole}\.?$"
    some, any_ = (r"\d+", r"\d*") if field.decimal_places is None else (
        rf"\d{{1,{field.decimal_places}}}",
        rf"\d{{0,{field.decimal_places}}}",
    )
    return rf"^{sign}(?:0*{whole}(?:\.{any_})?|0*\.{some})$"


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable error code, e.g. `validation_error`.")
    message = serializers.CharField()
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Offending field names (dotted for nested fields) and their problems.",
    )
    request_id = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


_ERRORS = {
    "400": "Invalid input; `error.fields` names each offending field.",
    "401": "Missing, unknown, revoked or expired API key.",
    "403": "Authenticated but not allowed (`insufficient_scope`: the API key lacks the scope this operation needs).",
    "404": "Not found, or in another project (`project_not_found`: the X-Project named is not one of yours).",
    "405": "Method not allowed.",
    "406": "Not acceptable.",
    "413": "Request body too large.",
    "415": "Unsupported media type.",
    "429": "Rate limit exceeded (`rate_limited`); retry after `Retry-After` seconds.",
    "500": "Internal server error.",
    "503": "A dependency is unavailable (`broker_unavailable`: Redis, the queue and cache; `database_unavailable`); "
    "nothing was done. Retry after `Retry-After` seconds.",
}
_BODY_ONLY = {"413", "415"}
# Set on every response of a rate limited operation (all but the public health check) while limits are on.
_RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": "Requests allowed per window for this API key (run creations for run creation), "
    "or per IP address without a key.",
    "X-RateLimit-Remaining": "Requests left in the current window.",
    "X-RateLimit-Reset": "Seconds until the current window ends.",
}
_AUTH_ONLY = {"401", "403"}


PROJECT_HEADER = OpenApiParameter(
    "X-Project",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "The project to act in, by slug or id (also `?project=`). Signed in: default your personal project. "
        "An API key acts in its own project; naming another is a 404."
    ),
)


class AutoSchema(SpectacularAutoSchema):
    # Request schemas (COMPONENT_SPLIT_REQUEST keeps them apart from responses) state what the server
    # checks: no NUL anywhere, trimmed strings not blank, decimal strings in range, non-empty lists, no
    # unknown fields for strict serializers, and a serializer's own `json_schema_rules` (either-or
    # fields). A schema-valid request is then refused only for what no schema can know (what exists).

    def _json_value_ref(self) -> str:
        component = ResolvedComponent(
            name=JSON_VALUE, type=ResolvedComponent.SCHEMA, object=JSON_VALUE, schema=copy.deepcopy(_JSON_VALUE_SCHEMA)
        )
        self.registry.register_on_missing(component)
        return str(component.ref["$ref"])

    def _nul_free(self, schema: Any, *, value: bool = True) -> Any:
        """`schema` leaving no room for NUL in a string; an "any value" in a value position (not a
        oneOf branch, which may only name required fields) becomes JSONValue."""
        if not isinstance(schema, dict) or "$ref" in schema:
            return schema
        if value and not schema.keys() & _SHAPING:
            # OpenAPI 3.0 ignores a $ref's siblings (a description, a default): hence the allOf.
            ref = {"$ref": self._json_value_ref()}
            return {**schema, "allOf": [ref]} if schema else ref
        types = _types(schema)
        if "string" in types and not schema.keys() & {"pattern", "format", "enum"}:
            schema["pattern"] = NUL_FREE
        if "object" in types and schema.get("additionalProperties", True) is not False:
            extra = schema.get("additionalProperties")
            schema["additionalProperties"] = self._nul_free(extra if isinstance(extra, dict) else {})
        for name, property_schema in schema.get("properties", {}).items():
            schema["properties"][name] = self._nul_free(property_schema)
        if "array" in types or "items" in schema:
            items = schema.get("items")
            schema["items"] = self._nul_free(items if isinstance(items, dict) else {})
        for keyword in ("oneOf", "anyOf", "allOf"):
            if keyword in schema:
                schema[keyword] = [self._nul_free(branch, value=False) for branch in schema[keyword]]
        # Never into `not`: constraining what is excluded would loosen the schema.
        return schema

    def _map_serializer_field(self, field: Any, direction: Any, bypass_extensions: bool = False) -> Any:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if direction != "request" or not isinstance(schema, dict):
            return schema
        if isinstance(field, serializers.DecimalField):
            if getattr(field, "coerce_to_string", api_settings.COERCE_DECIMAL_TO_STRING):
                schema["pattern"] = _decimal_pattern(field)
                schema["maxLength"] = field.MAX_STRING_LENGTH
        elif (
            isinstance(field, serializers.CharField)
            and _types(schema) == {"string"}
            and not schema.keys() & {"pattern", "format", "enum"}
            and not any(isinstance(v, RegexValidator) for v in field.validators)
        ):
            # DRF trims, then refuses a blank value; every CharField refuses NUL.
            schema["pattern"] = NON_BLANK if field.trim_whitespace and not field.allow_blank else NUL_FREE
        lists = (serializers.ListField, serializers.ListSerializer, serializers.ManyRelatedField)
        if isinstance(field, lists) and not field.allow_empty:
            schema.setdefault("minItems", 1)
        schema = self._nul_free(schema)
        if schema.get("pattern") == NUL_FREE and any(isinstance(v, RegexValidator) for v in field.validators):
            del schema["pattern"]  # the validator's own pattern comes next (and it takes no NUL)
        return schema

    def _insert_field_validators(self, field: Any, schema: dict[str, Any]) -> None:
        super()._insert_field_validators(field, schema)
        # drf-spectacular offers a blank field's "" as a second oneOf branch; when the pattern above
        # takes "" already, "" would match both branches and so be refused.
        branches = schema.get("oneOf", [])
        if (
            len(branches) == 2
            and branches[1] == {"type": "string", "maxLength": 0}
            and branches[0].get("pattern") == NUL_FREE
            and "minLength" not in branches[0]
        ):
            schema.update(schema.pop("oneOf")[0])

    def _map_serializer(self, serializer: Any, direction: Any, bypass_extensions: bool = False) -> Any:
        schema = super()._map_serializer(serializer, direction, bypass_extensions)
        if direction != "request":
            return schema
        if isinstance(serializer, StrictInputSerializer) or (
            isinstance(serializer, type) and issubclass(serializer, StrictInputSerializer)
        ):
            schema["additionalProperties"] = False
        else:  # unknown fields are ignored, but still parsed
            schema.setdefault("additionalProperties", {"$ref": self._json_value_ref()})
        rules: Sequence[dict[str, Any]] = getattr(serializer, "json_schema_rules", ())
        if rules:
            schema["allOf"] = [*schema.get("allOf", []), *copy.deepcopy(list(rules))]
        return schema

    def _get_request_for_media_type(self, serializer: Any, direction: Any = "request") -> Any:
        schema, required = super()._get_request_for_media_type(serializer, direction)
        rules: Sequence[dict[str, Any]] = getattr(serializer, "json_schema_rules", ())
        if schema is not None and not required and self.method != "PATCH":
            # An absent body reads as {}: required when the rules refuse {} (template or messages).
            required = any(not Draft202012Validator(rule).is_valid({}) for rule in rules)
        return schema, required

    def get_override_parameters(self) -> list[Any]:
        """Every project-scoped operation (a view without `project_scoped = False`, duck-typed: llmops
        imports no app) takes the optional X-Project header, so Swagger's users can pick a project."""
        parameters = list(super().get_override_parameters())
        public = any(isinstance(p, permissions.AllowAny) for p in self.view.get_permissions())
        if getattr(self.view, "project_scoped", True) and not public:
            parameters.append(PROJECT_HEADER)
        return parameters

    def _required_scope(self) -> str | None:
        """The API key scope this operation needs, as the view's scope-checking permission reports it
        (duck-typed: llmops imports no app)."""
        for permission in self.view.get_permissions():
            required_scope = getattr(permission, "required_scope", None)
            if required_scope is not None:
                return required_scope(self.view, self.method)  # type: ignore[no-any-return]
        return None

    def get_operation(self, *args: Any, **kwargs: Any) -> Any:
        operation = super().get_operation(*args, **kwargs)
        scope = self._required_scope()
        if operation is not None and scope:
            note = f"Requires scope: {scope}."
            description = operation.get("description")
            operation["description"] = f"{description}\n\n{note}" if description else note
        return operation

    def _get_response_headers_for_code(self, status_code: Any, direction: Any = "response") -> Any:
        headers = super()._get_response_headers_for_code(status_code, direction)
        if any(isinstance(p, permissions.AllowAny) for p in self.view.get_permissions()):
            return headers
        described = dict(_RATE_LIMIT_HEADERS)
        if str(status_code) == "429":
            described["Retry-After"] = "Whole seconds until the current window ends and requests are admitted again."
        if str(status_code) == "503":
            described["Retry-After"] = "Whole seconds to wait before retrying."
        documented = {name: {"schema": {"type": "integer"}, "description": text} for name, text in described.items()}
        return documented | headers

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        public = any(isinstance(p, permissions.AllowAny) for p in self.view.get_permissions())
        scope = self._required_scope()
        # A view answering in another error shape (the gateway's OpenAI one) names its serializer.
        error_serializer = getattr(self.view, "error_serializer", ErrorSerializer)
        for code, description in _ERRORS.items():
            if code in responses:
                continue
            if code in _BODY_ONLY and self.method not in ("POST", "PUT", "PATCH"):
                continue
            if code in _AUTH_ONLY and public:
                continue
            if code == "403" and scope:
                description = (
                    f"`insufficient_scope`: the API key lacks the scope {scope}; `insufficient_role`: your role in "
                    "the project does not allow it."
                )
            responses[code] = self._get_response_for_code(
                OpenApiResponse(error_serializer, description=description), code
            )
        # gunicorn itself refuses request lines over its limit (4094 bytes) before Django sees them,
        # with a plain HTML page; documented as such so clients (and the fuzzer) know to expect it.
        responses.setdefault(
            "414",
            {
                "description": "Request line too long (URL and query string), refused by the HTTP server.",
                "content": {"text/html": {"schema": {"type": "string"}}},
            },
        )
        return responses
