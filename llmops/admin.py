"""Admin base classes shared by the apps."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.db import models
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from llmops.errors import DomainError


class ReadOnlyAdmin(admin.ModelAdmin):
    """For append-only records (runs, cost entries, label history): viewable, never added, changed
    or deleted from the admin."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ShownOnce(str):
    """A secret shown once on a page, with a masked repr: when a template variable lookup fails,
    Django logs the whole template context (as repr) at DEBUG, and the admin's base templates look
    up optional variables such as `subtitle`."""

    def __repr__(self) -> str:
        return "'<secret, not logged>'"


class ShowSecretOnceMixin:
    """For admins whose add creates a secret (API keys, webhook endpoints) through a service: the
    secret is shown on the page right after saving, rendered directly (a redirect + message would
    park it in the session or a cookie), and never again.

    `save_model` calls `adopt_created(request, obj, saved, secret)`; `response_add` renders
    `created_template` with `created_context(obj, secret)`."""

    created_template: str
    admin_site: Any
    opts: Any

    def adopt_created(self, request: HttpRequest, obj: models.Model, saved: models.Model, secret: str) -> None:
        """Gives the admin's `obj` the saved row's values (it logs and redirects with it), and keeps
        the secret on this request only."""
        for field in type(saved)._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding = False
        request._shown_once_secret = ShownOnce(secret)  # type: ignore[attr-defined]

    def created_context(self, obj: Any, secret: ShownOnce) -> dict[str, Any]:
        raise NotImplementedError

    def render_once(self, request: HttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
        context = {**self.admin_site.each_context(request), "opts": self.opts, **context}
        response = TemplateResponse(request, template, context)
        response["Cache-Control"] = "no-store"
        return response

    def response_add(self, request: HttpRequest, obj: Any, post_url_continue: str | None = None) -> HttpResponse:
        secret = getattr(request, "_shown_once_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)  # type: ignore[misc]
        return self.render_once(request, self.created_template, self.created_context(obj, secret))


class ServiceRefused(Exception):
    """A service refused a write the admin's forms had accepted: raised out of `save_model`,
    `delete_model` or `save_formset` for ServiceWritesMixin to show. `on` says where the page shows
    it: "form" (the RefusableForm), or a name an inline looks for with `service_refusal`."""

    def __init__(self, error: DomainError, *, on: str = "form", who: str = ""):
        super().__init__(error.message)
        self.error = error
        self.on = on
        self.text = f"{who}: {error.message}" if who else error.message


def service_refusal(request: HttpRequest, on: str) -> ServiceRefused | None:
    """The refusal this request is being shown again with, if it is to be shown `on` that part."""
    refused: ServiceRefused | None = getattr(request, "_service_refusal", None)
    return refused if refused is not None and refused.on == on else None


class RefusableForm(forms.ModelForm):
    """Shows the refusal of the save it made, on its fields (`refusal` is set on the second pass)."""

    refusal: DomainError | None = None

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if self.refusal is not None:
            if not self.refusal.fields:
                self.add_error(None, self.refusal.message)
            for name, problems in self.refusal.fields.items():
                self.add_error(name if name in self.fields else None, [f"{name}: {problem}" for problem in problems])
        return cleaned


class ServiceWritesMixin:
    """For admins whose saves and deletes call services that may refuse (a DomainError, raised on as
    ServiceRefused): a refusal is an error on the page, never a 500.

    The admin saves (and deletes) in one transaction, so a refusal raised out of it has rolled back
    everything the submission wrote, the admin log entry included. The change page then comes back
    with the submitted data and the refusal on the form (a RefusableForm: `get_form` hands it the
    refusal) or on an inline that asks `service_refusal`; a refused delete comes back as an error
    message on the object's page.
    """

    admin_site: Any
    opts: Any

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)  # type: ignore[misc]
        refused = service_refusal(request, "form")
        if refused is not None:
            form = type(form.__name__, (form,), {"refusal": refused.error})
        return form

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)  # type: ignore[misc]
        except ServiceRefused as refused:
            request._service_refusal = refused  # type: ignore[attr-defined]
            # Validation fails this time, on the refusal: nothing is saved, the form is rendered.
            return super().changeform_view(request, object_id, form_url, extra_context)  # type: ignore[misc]

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)  # type: ignore[misc]
        except ServiceRefused as refused:
            self.message_user(request, refused.text, messages.ERROR)  # type: ignore[attr-defined]
            url = reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                args=[quote(unquote(object_id))],
                current_app=self.admin_site.name,
            )
            return HttpResponseRedirect(url)

    def get_actions(self, request: HttpRequest) -> Any:
        # The bulk delete deletes the rows directly (and counts its success before knowing it), so
        # these are deleted one at a time, from their page, through the service.
        actions = super().get_actions(request)  # type: ignore[misc]
        actions.pop("delete_selected", None)
        return actions
