from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from accounts import services
from accounts.models import APIKey, Scope, User, all_scopes
from llmops.admin import ShownOnce, ShowSecretOnceMixin
from llmops.errors import Conflict


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "email", "is_staff", "is_active", "created_at"]
    list_filter = ["is_staff", "is_superuser", "is_active"]
    search_fields = ["username", "email", "first_name", "last_name"]
    ordering = ["username"]


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
class APIKeyAdmin(ShowSecretOnceMixin, admin.ModelAdmin):
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
    created_template = "admin/accounts/apikey/created.html"

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
        self.adopt_created(request, obj, api_key, plaintext)

    def created_context(self, obj: APIKey, secret: ShownOnce) -> dict[str, Any]:
        return {"api_key": APIKey.objects.get(pk=obj.pk), "plaintext": secret, "title": "API key created"}

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
            return self.render_once(
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
            rotated.append({"api_key": api_key, "plaintext": ShownOnce(plaintext)})
        return self.render_once(
            request,
            "admin/accounts/apikey/rotated.html",
            {"title": "API keys rotated", "rotated": rotated, "skipped": skipped},
        )
