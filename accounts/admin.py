from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from accounts import services, webhooks
from accounts.models import APIKey, Scope, User, WebhookDelivery, WebhookEndpoint, WebhookEvent, all_scopes
from llmops.admin import ReadOnlyAdmin
from llmops.errors import Conflict


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "email", "is_staff", "is_active", "created_at"]
    list_filter = ["is_staff", "is_superuser", "is_active"]
    search_fields = ["username", "email", "first_name", "last_name"]
    ordering = ["username"]


class _Plaintext(str):
    """A key shown once on a page, with a masked repr: when a template variable lookup fails, Django
    logs the whole template context (as repr) at DEBUG, and the admin's base templates look up
    optional variables such as `subtitle`."""

    def __repr__(self) -> str:
        return "'<API key, not logged>'"


class APIKeyChangeForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, initial=all_scopes, widget=forms.CheckboxSelectMultiple, help_text="Granted scopes."
    )

    class Meta:
        model = APIKey
        fields = ["name", "expires_at", "scopes"]

    def clean_scopes(self) -> list[str]:
        return services.scopes_clean(scopes=self.cleaned_data["scopes"])


class APIKeyAddForm(APIKeyChangeForm):
    class Meta(APIKeyChangeForm.Meta):
        fields = ["user", "name", "expires_at", "scopes"]

    def clean_expires_at(self) -> Any:
        # api_key_create refuses a past expiry too, but a raise in save_model would be a 500.
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("Must be in the future.")
        return expires_at


class RotateForm(forms.Form):
    grace_seconds = forms.IntegerField(
        min_value=0,
        max_value=services.MAX_ROTATION_GRACE_SECONDS,
        initial=0,
        label="Grace period (seconds)",
        help_text="How long the old secrets keep working; 0 ends them at once.",
    )


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    """Keys are created here (the plaintext is shown once, on the page after saving), rotated (likewise)
    and revoked; the secret hashes are never displayed."""

    form = APIKeyChangeForm
    list_display = ["name", "prefix", "user", "status", "scope_list", "expires_at", "last_used_at", "created_at"]
    list_filter = ["is_active", "created_at", "expires_at"]
    search_fields = ["name", "prefix", "user__username", "user__email"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]
    # Revocation is one-way, through the "Revoke" action, so is_active is not editable.
    readonly_fields = [
        "prefix",
        "user",
        "status",
        "is_active",
        "revoked_at",
        "rotated_at",
        "previous_secret_expires_at",
        "last_used_at",
        "created_at",
        "updated_at",
    ]
    fields = [
        "user",
        "name",
        "prefix",
        "scopes",
        "status",
        "is_active",
        "expires_at",
        "rate_limit",
        "run_rate_limit",
        "revoked_at",
        "rotated_at",
        "previous_secret_expires_at",
        "last_used_at",
        "created_at",
    ]
    actions = ["revoke_selected", "rotate_selected"]

    @admin.display(description="Scopes")
    def scope_list(self, obj: APIKey) -> str:
        return ", ".join(obj.scopes)

    def get_form(self, request: HttpRequest, obj: APIKey | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = APIKeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: APIKey | None = None) -> Any:
        return ["user", "name", "expires_at", "scopes"] if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: APIKey | None = None) -> Any:
        return [] if obj is None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: APIKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        api_key, plaintext = services.api_key_create(
            user=form.cleaned_data["user"],
            name=form.cleaned_data["name"],
            expires_at=form.cleaned_data["expires_at"],
            scopes=form.cleaned_data["scopes"],
        )
        # The admin logs and redirects with `obj`: give it the saved row's values (prefix included).
        for field in APIKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(api_key, field.attname))
        obj._state.adding = False
        # Kept on the request only, to render the one page that shows it.
        request._created_api_key = _Plaintext(plaintext)  # type: ignore[attr-defined]

    def _render_once(self, request: HttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
        # Rendered directly instead of redirect + message: a message would park the secret
        # in the session or a cookie.
        context = {**self.admin_site.each_context(request), "opts": self.opts, **context}
        response = TemplateResponse(request, template, context)
        response["Cache-Control"] = "no-store"
        return response

    def response_add(self, request: HttpRequest, obj: APIKey, post_url_continue: str | None = None) -> HttpResponse:
        plaintext = getattr(request, "_created_api_key", None)
        if plaintext is None:
            return super().response_add(request, obj, post_url_continue)
        return self._render_once(
            request,
            "admin/accounts/apikey/created.html",
            {"api_key": APIKey.objects.get(pk=obj.pk), "plaintext": plaintext, "title": "API key created"},
        )

    @admin.action(description="Revoke selected API keys")
    def revoke_selected(self, request: HttpRequest, queryset: Any) -> None:
        for api_key in queryset:
            services.api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")

    @admin.action(description="Rotate selected API keys (new secrets are shown once)")
    def rotate_selected(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> HttpResponse:
        """First a confirmation page with the grace period, then the new plaintexts, on that page only."""
        form = RotateForm(request.POST if "confirm" in request.POST else None)
        if not form.is_valid():
            return self._render_once(
                request,
                "admin/accounts/apikey/rotate_confirmation.html",
                {
                    "title": "Rotate API keys",
                    "form": form,
                    "queryset": queryset,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                },
            )
        rotated, skipped = [], []
        for api_key in queryset:
            try:
                api_key, plaintext = services.api_key_rotate(
                    api_key=api_key, grace_seconds=form.cleaned_data["grace_seconds"]
                )
            except Conflict:  # revoked or expired: nothing to rotate
                skipped.append(api_key)
                continue
            self.log_change(request, api_key, "Rotated the secret.")
            rotated.append({"api_key": api_key, "plaintext": _Plaintext(plaintext)})
        return self._render_once(
            request,
            "admin/accounts/apikey/rotated.html",
            {"title": "API keys rotated", "rotated": rotated, "skipped": skipped},
        )


class _WebhookSecret(_Plaintext):
    """A webhook signing secret shown once; masked in the logged template context, like _Plaintext."""

    def __repr__(self) -> str:
        return "'<webhook secret, not logged>'"


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=2000, assume_scheme="https")
    events = forms.MultipleChoiceField(choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = WebhookEndpoint
        fields = ["owner", "url", "events", "description", "is_active"]

    def clean_url(self) -> str:
        # The service checks again, but a raise in save_model would be a 500, not a form error.
        try:
            return webhooks.url_check(self.cleaned_data["url"])
        except (webhooks.URLRefused, webhooks.URLUnresolvable) as exc:
            raise forms.ValidationError(str(exc)) from None


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Endpoints are registered here (the signing secret is shown once, on the page after saving) and
    edited; the secret is never displayed."""

    form = WebhookEndpointForm
    list_display = ["url", "owner", "event_list", "is_active", "created_at"]
    list_filter = ["is_active", "created_at"]
    search_fields = ["url", "description", "owner__username", "owner__email"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]

    @admin.display(description="Events")
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events)

    def get_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> Any:
        if obj is None:
            return ["owner", "url", "events", "description"]
        return ["owner", "url", "events", "description", "is_active", "created_at", "updated_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> Any:
        return [] if obj is None else ["owner", "created_at", "updated_at"]

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            webhooks.webhook_endpoint_update(
                endpoint=obj,
                url=data["url"],
                events=data["events"],
                description=data["description"],
                is_active=data["is_active"],
            )
            return
        endpoint, secret = webhooks.webhook_endpoint_create(
            owner=data["owner"], url=data["url"], events=data["events"], description=data["description"]
        )
        # The admin logs and redirects with `obj`: give it the saved row's values.
        for field in WebhookEndpoint._meta.concrete_fields:
            setattr(obj, field.attname, getattr(endpoint, field.attname))
        obj._state.adding = False
        # Kept on the request only, to render the one page that shows it.
        request._created_webhook_secret = _WebhookSecret(secret)  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue: str | None = None
    ) -> HttpResponse:
        secret = getattr(request, "_created_webhook_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        # Rendered directly instead of redirect + message: a message would park the secret in the session.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "endpoint": WebhookEndpoint.objects.select_related("owner").get(pk=obj.pk),
            "secret": secret,
            "title": "Webhook endpoint created",
        }
        response = TemplateResponse(request, "admin/accounts/webhookendpoint/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    def delete_model(self, request: HttpRequest, obj: WebhookEndpoint) -> None:
        webhooks.webhook_endpoint_delete(endpoint=obj)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """The delivery log: written by the delivery actor only."""

    list_display = ["event", "endpoint", "status", "attempts", "last_response_code", "created_at", "delivered_at"]
    list_filter = ["status", "event", "created_at"]
    search_fields = ["endpoint__url", "endpoint__owner__username"]
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
