from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from llmops.admin import ReadOnlyAdmin
from llmops.errors import DomainError
from prompts import services
from prompts.models import LATEST_LABEL, LabelMove, Prompt, PromptLabel, PromptVersion


def _add_domain_error(form: forms.ModelForm, exc: DomainError) -> None:
    """Shows a service's refusal on the form (a raise in save_model would be a 500)."""
    if not exc.fields:
        form.add_error(None, exc.message)
    for name, problems in exc.fields.items():
        field = name.split(".")[0]
        form.add_error(field if field in form.fields else None, [f"{name}: {problem}" for problem in problems])


class PromptVersionAddForm(forms.ModelForm):
    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if self.errors or cleaned.get("prompt") is None:
            return cleaned
        is_text = cleaned.get("kind") == PromptVersion.Kind.TEXT
        try:
            services.prompt_version_check(
                prompt=cleaned["prompt"],
                model=cleaned.get("model", ""),
                template=cleaned.get("template", "") if is_text else None,
                messages=None if is_text else cleaned.get("messages"),
                variables=cleaned.get("variables"),
                params=cleaned.get("params"),
            )
        except DomainError as exc:
            _add_domain_error(self, exc)
        return cleaned


class PromptLabelForm(forms.ModelForm):
    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        prompt = cleaned.get("prompt") or getattr(self.instance, "prompt", None)
        version = cleaned.get("version")
        if cleaned.get("name") == LATEST_LABEL:
            self.add_error("name", "'latest' always means the highest version and cannot be set.")
        if prompt is not None and version is not None and version.prompt_id != prompt.pk:
            # label_move finds the version by number, so another prompt's version would label the wrong one.
            self.add_error("version", "Choose a version of this label's prompt.")
        if prompt is not None and prompt.archived_at is not None:
            self.add_error(None, "The prompt is archived; its labels cannot move.")
        return cleaned


class PromptVersionInline(admin.StackedInline):
    """Existing versions are read-only; new ones go through the same validation as the API."""

    model = PromptVersion
    extra = 0
    fields = readonly_fields = (
        "number",
        "kind",
        "model",
        "template",
        "messages",
        "variables",
        "params",
        "commit_message",
        "created_by",
        "created_at",
    )
    can_delete = False
    show_change_link = True
    ordering = ["-number"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PromptLabelInline(admin.TabularInline):
    model = PromptLabel
    extra = 0
    fields = readonly_fields = ("name", "version", "updated_at")
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "latest_version_number", "archived_at", "updated_at"]
    list_filter = ["archived_at", "created_at"]
    search_fields = ["name", "description", "project__slug"]
    list_select_related = ["project"]
    raw_id_fields = ["project"]
    readonly_fields = ["latest_version_number", "created_at", "updated_at"]
    inlines = [PromptLabelInline, PromptVersionInline]


@admin.register(PromptVersion)
class PromptVersionAdmin(admin.ModelAdmin):
    """Versions are created here through the prompt service (numbered, validated) and never edited."""

    list_display = ["__str__", "prompt", "number", "kind", "model", "created_by", "created_at"]
    list_filter = ["kind", "model", "created_at"]
    search_fields = ["prompt__name", "model", "commit_message", "template"]
    list_select_related = ["prompt", "created_by"]
    raw_id_fields = ["prompt"]
    add_fields = ["prompt", "kind", "template", "messages", "variables", "model", "params", "commit_message"]

    def get_form(
        self, request: HttpRequest, obj: PromptVersion | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = PromptVersionAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: PromptVersion | None = None) -> Any:
        if obj is None:
            return self.add_fields
        return ["prompt", "number", *self.add_fields[1:], "created_by", "created_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: PromptVersion | None = None) -> Any:
        return [] if obj is None else self.get_fields(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: PromptVersion, form: Any, change: bool) -> None:
        if change:
            return  # unreachable through the form: every field is read-only
        is_text = obj.kind == PromptVersion.Kind.TEXT
        created = services.prompt_version_create(
            prompt=obj.prompt,
            created_by=request.user,  # type: ignore[arg-type]
            model=obj.model,
            template=obj.template if is_text else None,
            messages=None if is_text else obj.messages,
            variables=obj.variables,
            params=obj.params,
            commit_message=obj.commit_message,
        )
        obj.pk = created.pk
        obj.number = created.number
        obj._state.adding = False


@admin.register(PromptLabel)
class PromptLabelAdmin(admin.ModelAdmin):
    form = PromptLabelForm
    list_display = ["__str__", "prompt", "name", "version", "updated_at"]
    list_filter = ["name"]
    search_fields = ["prompt__name", "name"]
    list_select_related = ["prompt", "version"]
    raw_id_fields = ["prompt", "version"]

    def get_readonly_fields(self, request: HttpRequest, obj: PromptLabel | None = None) -> Any:
        return ["prompt", "name"] if obj else []

    def save_model(self, request: HttpRequest, obj: PromptLabel, form: Any, change: bool) -> None:
        # Every move, from the admin too, goes through the service so it lands in the history.
        moved = services.label_move(
            prompt=obj.prompt,
            label=obj.name,
            version_number=obj.version.number,
            moved_by=request.user,  # type: ignore[arg-type]
        )
        obj.pk = moved.pk
        obj._state.adding = False


@admin.register(LabelMove)
class LabelMoveAdmin(ReadOnlyAdmin):
    list_display = ["prompt", "label", "from_version", "to_version", "moved_by", "created_at"]
    list_filter = ["label", "created_at"]
    search_fields = ["prompt__name", "label", "moved_by__username"]
    list_select_related = ["prompt", "from_version", "to_version", "moved_by"]
