from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from prompts import services
from prompts.models import LabelMove, Prompt, PromptLabel, PromptVersion


class PromptVersionInline(admin.StackedInline):
    """Existing versions are read-only; new ones go through the same validation as the API."""

    model = PromptVersion
    extra = 0
    fields = ["number", "kind", "model", "template", "messages", "variables", "params", "commit_message", "created_by", "created_at"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True
    ordering = ["-number"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PromptLabelInline(admin.TabularInline):
    model = PromptLabel
    extra = 0
    fields = ["name", "version", "updated_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "latest_version_number", "archived_at", "updated_at"]
    list_filter = ["archived_at", "created_at"]
    search_fields = ["name", "description", "owner__username"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
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
            prompt=obj.prompt, label=obj.name, version_number=obj.version.number, moved_by=request.user  # type: ignore[arg-type]
        )
        obj.pk = moved.pk
        obj._state.adding = False


@admin.register(LabelMove)
class LabelMoveAdmin(admin.ModelAdmin):
    list_display = ["prompt", "label", "from_version", "to_version", "moved_by", "created_at"]
    list_filter = ["label", "created_at"]
    search_fields = ["prompt__name", "label", "moved_by__username"]
    list_select_related = ["prompt", "from_version", "to_version", "moved_by"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
