from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from accounts import services
from accounts.models import APIKey, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "email", "is_staff", "is_active", "created_at"]
    list_filter = ["is_staff", "is_superuser", "is_active"]
    search_fields = ["username", "email", "first_name", "last_name"]
    ordering = ["username"]


class APIKeyAddForm(forms.ModelForm):
    class Meta:
        model = APIKey
        fields = ["user", "name", "expires_at"]

    def clean_expires_at(self) -> Any:
        # api_key_create refuses a past expiry too, but a raise in save_model would be a 500.
        expires_at = self.cleaned_data.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            raise forms.ValidationError("Must be in the future.")
        return expires_at


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    """Keys are created here (the plaintext is shown once, on the page after saving) and revoked;
    the secret hash is never displayed."""

    list_display = ["name", "prefix", "user", "status", "expires_at", "last_used_at", "created_at"]
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
        "last_used_at",
        "created_at",
        "updated_at",
    ]
    fields = ["user", "name", "prefix", "status", "is_active", "expires_at", "revoked_at", "last_used_at", "created_at"]
    actions = ["revoke_selected"]

    def get_form(self, request: HttpRequest, obj: APIKey | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = APIKeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: APIKey | None = None) -> Any:
        return ["user", "name", "expires_at"] if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: APIKey | None = None) -> Any:
        return [] if obj is None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: APIKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        api_key, plaintext = services.api_key_create(
            user=form.cleaned_data["user"], name=form.cleaned_data["name"], expires_at=form.cleaned_data["expires_at"]
        )
        # The admin logs and redirects with `obj`: give it the saved row's values (prefix included).
        for field in APIKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(api_key, field.attname))
        obj._state.adding = False
        # Kept on the request only, to render the one page that shows it.
        request._created_api_key = plaintext  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: APIKey, post_url_continue: str | None = None) -> HttpResponse:
        plaintext = getattr(request, "_created_api_key", None)
        if plaintext is None:
            return super().response_add(request, obj, post_url_continue)
        # Rendered directly instead of redirect + message: a message would park the secret
        # in the session or a cookie.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "api_key": APIKey.objects.get(pk=obj.pk),
            "plaintext": plaintext,
            "title": "API key created",
        }
        response = TemplateResponse(request, "admin/accounts/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected API keys")
    def revoke_selected(self, request: HttpRequest, queryset: Any) -> None:
        for api_key in queryset:
            services.api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")
