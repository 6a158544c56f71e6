"""Admin base classes shared by the apps."""

from typing import Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse


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
