"""Serializers of the webhooks API."""

from rest_framework import serializers

from llmops.serializers import TypedInputSerializer
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent


class WebhookEndpointSerializer(serializers.ModelSerializer):
    events = serializers.ListField(child=serializers.ChoiceField(choices=WebhookEvent.choices), read_only=True)

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "events", "description", "is_active", "created_at", "updated_at"]
        read_only_fields = fields


class WebhookEndpointCreateSerializer(TypedInputSerializer):
    # A CharField: the service checks the URL (scheme, credentials, resolved addresses) and names the problem.
    url = serializers.CharField(max_length=2000, help_text="http(s) URL that receives the POSTs.")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.choices), allow_empty=False, help_text="Events to receive."
    )
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class WebhookEndpointUpdateSerializer(TypedInputSerializer):
    url = serializers.CharField(max_length=2000, required=False)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.choices), allow_empty=False, required=False
    )
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False, help_text="false pauses deliveries to this endpoint.")


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    """A new endpoint, with its signing secret: shown only in this response."""

    # Needs the plaintext secret in its context: the row holds it only encrypted.

    secret = serializers.SerializerMethodField(
        help_text="The signing secret. Shown only in this response; store it now (see README, Webhooks).",
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields

    def get_secret(self, endpoint: WebhookEndpoint) -> str:
        return str(self.context["secret"])


class WebhookDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event",
            "status",
            "attempts",
            "last_response_code",
            "last_error",
            "next_attempt_at",
            "delivered_at",
            "payload",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields
