from rest_framework import serializers

from accounts.models import APIKey, Scope
from accounts.services import MAX_ROTATION_GRACE_SECONDS
from llmops.serializers import TypedInputSerializer


class APIKeySerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True, help_text="active, revoked or expired")
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=Scope.choices), read_only=True, help_text="Granted scopes."
    )
    previous_secret_expires_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="After a rotation with a grace period: until when the old secret still works.",
    )
    project = serializers.CharField(source="project.slug", read_only=True, help_text="The project's slug.")
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, help_text="The username of the member who made the key."
    )

    class Meta:
        model = APIKey
        fields = [
            "id",
            "name",
            "project",
            "created_by",
            "prefix",
            "scopes",
            "status",
            "is_active",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "rotated_at",
            "previous_secret_expires_at",
            "created_at",
        ]
        read_only_fields = fields


class APIKeyCreateSerializer(TypedInputSerializer):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    # An enum and minItems in the schema; the service checks the same again for its other callers.
    scopes = serializers.ListField(
        child=serializers.ChoiceField(
            choices=Scope.choices,
            error_messages={
                "invalid_choice": f'"{{input}}" is not a scope; valid scopes are {", ".join(Scope.values)}.'
            },
        ),
        required=False,
        min_length=1,
        error_messages={"min_length": "A key needs at least one scope."},
        help_text="Scopes to grant (default: all). Never more than the calling key has.",
    )


class APIKeyRotateSerializer(TypedInputSerializer):
    grace_seconds = serializers.IntegerField(
        min_value=0,
        max_value=MAX_ROTATION_GRACE_SECONDS,
        default=0,
        help_text="How long the old secret keeps working (default 0: it stops at once).",
    )


class APIKeyCreatedSerializer(APIKeySerializer):
    key = serializers.CharField(
        read_only=True, help_text="The plaintext key. Shown only in this response; store it now."
    )

    class Meta(APIKeySerializer.Meta):
        fields = [*APIKeySerializer.Meta.fields, "key"]
        read_only_fields = fields
