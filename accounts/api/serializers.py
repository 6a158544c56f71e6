from rest_framework import serializers

from accounts.models import APIKey


class APIKeySerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True, help_text="active, revoked or expired")

    class Meta:
        model = APIKey
        fields = [
            "id",
            "name",
            "prefix",
            "status",
            "is_active",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "created_at",
        ]
        read_only_fields = fields


class APIKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class APIKeyCreatedSerializer(APIKeySerializer):
    key = serializers.CharField(
        read_only=True, help_text="The plaintext key. Shown only in this response; store it now."
    )

    class Meta(APIKeySerializer.Meta):
        fields = [*APIKeySerializer.Meta.fields, "key"]
        read_only_fields = fields
