from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from llmops.admin import ReadOnlyAdmin, ShownOnce, ShowSecretOnceMixin
from webhooks import services, url_guard
from webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")
    events = forms.MultipleChoiceField(choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = WebhookEndpoint
        fields = ["project", "url", "events", "description", "is_active"]

    def clean_url(self) -> str:
        # The service checks again, but a raise in save_model would be a 500, not a form error.
        try:
            return url_guard.url_check(self.cleaned_data["url"])
        except (url_guard.URLRefused, url_guard.URLUnresolvable) as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ShowSecretOnceMixin, admin.ModelAdmin):
    """Endpoints are registered here (the signing secret is shown once, on the page after saving) and
    edited; the secret is never displayed."""

    form = WebhookEndpointForm
    list_display = ["url", "project", "event_list", "is_active", "created_at"]
    list_filter = ["is_active", "created_at"]
    search_fields = ["url", "description", "project__slug", "project__name"]
    list_select_related = ["project"]
    raw_id_fields = ["project"]
    created_template = "admin/webhooks/webhookendpoint/created.html"

    @admin.display(description="Events")
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events)

    def get_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> Any:
        if obj is None:
            return ["project", "url", "events", "description"]
        return ["project", "url", "events", "description", "is_active", "created_at", "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> Any:
        return [] if obj is None else ["project", "created_at", "updated_at"]

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            services.webhook_endpoint_update(
                endpoint=obj,
                url=data["url"],
                events=data["events"],
                description=data["description"],
                is_active=data["is_active"],
            )
            return
        endpoint, secret = services.webhook_endpoint_create(
            project=data["project"],
            created_by=request.user,  # type: ignore[arg-type]
            url=data["url"],
            events=data["events"],
            description=data["description"],
        )
        self.adopt_created(request, obj, endpoint, secret)

    def created_context(self, obj: WebhookEndpoint, secret: ShownOnce) -> dict[str, Any]:
        endpoint = WebhookEndpoint.objects.select_related("project").get(pk=obj.pk)
        return {"endpoint": endpoint, "secret": secret, "title": "Webhook endpoint created"}

    def delete_model(self, request: HttpRequest, obj: WebhookEndpoint) -> None:
        services.webhook_endpoint_delete(endpoint=obj)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """The delivery log: written by the delivery actor only."""

    list_display = ["event", "endpoint", "status", "attempts", "last_response_code", "created_at", "delivered_at"]
    list_filter = ["status", "event", "created_at"]
    search_fields = ["endpoint__url", "endpoint__project__slug"]
    list_select_related = ["endpoint"]
    readonly_fields = (
        "id",
        "endpoint",
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
    )
    fields = readonly_fields
