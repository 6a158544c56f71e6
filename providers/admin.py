from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest, QueryDict

from providers.models import Provider
from providers.services import provider_set


class ProviderForm(forms.ModelForm):
    """Validated by the model (Provider's field validators and clean), as providers.services.provider_set is."""

    class Meta:
        model = Provider
        fields = ["name", "kind", "base_url", "api_key_env", "timeout", "enabled"]

    def full_clean(self) -> None:
        super().full_clean()
        if self.has_error("api_key_env"):
            # What was typed may be the key itself: the page showing the error must not send it back.
            data = self.data.copy() if isinstance(self.data, QueryDict) else QueryDict(mutable=True)
            data[self.add_prefix("api_key_env")] = ""
            self.data = data


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    """The secret itself is never stored: only the name of the environment variable holding it.
    Saved through providers.services.provider_set, like `manage.py provider set`."""

    form = ProviderForm
    list_display = ["name", "kind", "base_url", "api_key_env", "timeout", "enabled", "updated_at"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "base_url"]

    def get_readonly_fields(self, request: HttpRequest, obj: Provider | None = None) -> Any:
        # Versions name their provider in their model string, and provider_set finds it by name.
        return ["name"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Provider, form: Any, change: bool) -> None:
        data = form.cleaned_data
        provider, _created = provider_set(
            name=obj.name,
            kind=data["kind"],
            base_url=data["base_url"],
            api_key_env=data["api_key_env"],
            timeout=data["timeout"],
            enabled=data["enabled"],
        )
        # The admin logs and redirects with `obj`: give it the saved row's values.
        for field in Provider._meta.concrete_fields:
            setattr(obj, field.attname, getattr(provider, field.attname))
        obj._state.adding = False
