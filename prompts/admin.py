from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html_join
from django.utils.safestring import SafeString

from llmops.admin import ReadOnlyAdmin
from llmops.errors import DomainError
from prompts import selectors, services
from prompts.diff import version_diff
from prompts.models import LATEST_LABEL, LabelMove, Prompt, PromptLabel, PromptVersion

# The label the versions inline offers to compare with (runs resolve it by default, runs.checks).
PRODUCTION_LABEL = "production"


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
        "compare",
    )
    can_delete = False
    show_change_link = True
    ordering = ["-number"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[PromptVersion]:
        # The production label's version number rides along, so the links cost no query per version.
        production = PromptLabel.objects.filter(prompt=OuterRef("prompt"), name=PRODUCTION_LABEL)
        return (
            super().get_queryset(request).annotate(production_number=Subquery(production.values("version__number")[:1]))
        )

    @admin.display(description="Compare")
    def compare(self, obj: PromptVersion) -> SafeString | str:
        """Links to the compare page: with the previous version, and with the one labelled production."""
        if obj.pk is None:
            return "-"
        url = reverse(f"{self.admin_site.name}:prompts_prompt_compare", args=[obj.prompt_id])
        links: list[tuple[str, str]] = []
        if obj.number > 1:
            links.append((compare_query(url, a=obj.number - 1, b=obj.number), "compare with previous"))
        production_number = getattr(obj, "production_number", None)
        if production_number is not None and production_number != obj.number:
            links.append((compare_query(url, a=production_number, b=obj.number), "compare with production"))
        if not links:
            return "-"
        return format_html_join(" | ", '<a href="{}" class="compare-link">{}</a>', links)


def compare_query(url: str, *, a: int, b: int) -> str:
    """The compare page's URL for versions `a` (left) and `b` (right)."""
    return f"{url}?{urlencode({'a': a, 'b': b})}"


def _version_number(query: QueryDict, key: str) -> int | None:
    """A version number from the query string: None if absent or blank; ValueError if not an integer."""
    raw = query.get(key, "").strip()
    if not raw:
        return None
    problem = ValueError(f"{key}: {raw[:40]!r} is not a version number.")
    if not raw.isascii() or not raw.isdigit():
        raise problem
    try:
        return int(raw)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        raise problem from None


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
    compare_template = "admin/prompts/prompt/compare.html"

    def get_urls(self) -> list[URLPattern]:
        # Before the defaults: their `<path:object_id>/` catch-all would swallow `<pk>/compare/`.
        compare = path(
            "<path:object_id>/compare/",
            self.admin_site.admin_view(self.compare_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_compare",
        )
        return [compare, *super().get_urls()]

    def compare_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The diff of two versions of a prompt: `?a=<number>&b=<number>`, side by side and unified.

        Defaults: b is the latest version, a the one before it (b itself when there is only one).
        An unknown prompt or version is a 404; a value that is not a number is a 400 page that
        still offers the pickers."""
        prompt = self.get_object(request, unquote(object_id))
        if prompt is None:
            raise Http404("Prompt not found.")
        if not self.has_view_permission(request, prompt):
            raise PermissionDenied
        versions = list(selectors.version_list(prompt=prompt))
        if not versions:
            raise Http404("This prompt has no versions to compare.")
        by_number = {version.number: version for version in versions}
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": f"Compare versions of {prompt}",
            "subtitle": None,
            "opts": self.opts,
            "original": prompt,
            "prompt": prompt,
            "versions": versions,
            "diff": None,
            "error": None,
        }
        try:
            a_number = _version_number(request.GET, "a")
            b_number = _version_number(request.GET, "b")
        except ValueError as exc:
            context.update(error=str(exc), a=versions[-1], b=versions[0])
            return TemplateResponse(request, self.compare_template, context, status=400)
        if b_number is None:
            b_number = versions[0].number
        if a_number is None:
            a_number = b_number - 1 if b_number - 1 in by_number else b_number
        # Looked up among the loaded versions: a huge number never reaches the database.
        missing = [number for number in (a_number, b_number) if number not in by_number]
        if missing:
            raise Http404(f"Version {missing[0]} of this prompt does not exist.")
        a, b = by_number[a_number], by_number[b_number]
        context.update(a=a, b=b, diff=version_diff(a, b))
        return TemplateResponse(request, self.compare_template, context)


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
