from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from accounts.models import Project, Role
from accounts.staff import staff_role_check
from llmops.admin import ReadOnlyAdmin
from llmops.errors import DomainError
from prompts import selectors, services
from prompts.admin_editor import VersionEditor
from prompts.admin_splits import SplitEditor, split_text
from prompts.diff import version_diff
from prompts.models import LATEST_LABEL, LabelMove, Prompt, PromptLabel, PromptVersion
from prompts.splits import MAX_SPLIT_ARMS, SPLIT_TOTAL
from providers.selectors import model_choices

# Labels the move form suggests besides those the prompt has.
SUGGESTED_LABELS = ("production", "staging")
# Label moves shown on the prompt's page; the whole history is the label moves' changelist.
HISTORY_SHOWN = 20

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


def label_role_check(*, user: Any, project: Project, label: str) -> str | None:
    """The staff user's role, if it may move `label`: an editor's, an admin's for a label the
    project protects (a superuser may: accounts.staff)."""
    protected = label in project.protected_labels
    minimum, action = (
        (Role.ADMIN, f"moving the protected label {label!r}") if protected else (Role.EDITOR, "moving labels")
    )
    return staff_role_check(user=user, project=project, minimum=minimum, action=action)


class PromptLabelForm(forms.ModelForm):
    # The staff user saving the form (PromptLabelAdmin.get_form): a protected label needs their admin role.
    acting_user: Any = None

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        prompt = cleaned.get("prompt") or getattr(self.instance, "prompt", None)
        version = cleaned.get("version")
        name = cleaned.get("name") or getattr(self.instance, "name", None)
        if cleaned.get("name") == LATEST_LABEL:
            self.add_error("name", "'latest' always means the highest version and cannot be set.")
        if prompt is not None and name:
            try:
                label_role_check(user=self.acting_user, project=prompt.project, label=name)
            except DomainError as exc:
                self.add_error(None, exc.message)
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
        "try_it",
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

    @admin.display(description="Try")
    def try_it(self, obj: PromptVersion) -> SafeString | str:
        """Links to the runs admin's "Run this version" form (runs.admin), when it is installed."""
        if obj.pk is None:
            return "-"
        try:
            url = reverse(f"{self.admin_site.name}:runs_run_try", args=[obj.pk])
        except NoReverseMatch:
            return "-"
        return format_html('<a href="{}" class="try-link">Run this version</a>', url)


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


class LabelMoveForm(forms.Form):
    """Which label goes to which version of `prompt` (the confirmation page's query or POST)."""

    label = forms.SlugField(max_length=50)
    version = forms.IntegerField(min_value=1)

    def __init__(self, *args: Any, prompt: Prompt, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.prompt = prompt

    def clean_label(self) -> str:
        label: str = self.cleaned_data["label"]
        if label == LATEST_LABEL:
            raise forms.ValidationError("'latest' always means the highest version and cannot be moved.")
        return label

    def clean_version(self) -> PromptVersion:
        number = self.cleaned_data["version"]
        version = PromptVersion.objects.filter(prompt=self.prompt, number=number).first()
        if version is None:
            raise forms.ValidationError(f"This prompt has no version {number}.")
        return version


def _last_moves(prompt: Prompt) -> dict[str, LabelMove]:
    """Each label's latest move: its `from_version` is where a roll back returns the label."""
    newest = LabelMove.objects.filter(prompt=prompt, label=OuterRef("label")).order_by("-created_at").values("pk")[:1]
    moves = LabelMove.objects.filter(prompt=prompt, pk=Subquery(newest)).select_related("from_version")
    return {move.label: move for move in moves}


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "latest_version_number", "archived_at", "updated_at"]
    list_filter = ["archived_at", "created_at"]
    search_fields = ["name", "description", "project__slug"]
    list_select_related = ["project"]
    raw_id_fields = ["project"]
    readonly_fields = ["latest_version_number", "created_at", "updated_at"]
    # The labels, their moves and the editor of the next version are sections of the change page
    # (change_form.html), fed by render_change_form.
    inlines = [PromptVersionInline]
    compare_template = "admin/prompts/prompt/compare.html"
    new_version_template = "admin/prompts/prompt/new_version.html"
    label_move_template = "admin/prompts/prompt/label_move.html"
    label_split_template = "admin/prompts/prompt/label_split.html"

    def get_urls(self) -> list[URLPattern]:
        # Before the defaults: their `<path:object_id>/` catch-all would swallow `<pk>/compare/`.
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        views = [
            ("compare/", self.compare_view, "compare"),
            ("versions/new/", self.new_version_view, "new_version"),
            ("labels/move/", self.label_move_view, "label_move"),
            ("labels/rollback/", require_POST(self.label_rollback_view), "label_rollback"),
            ("labels/split/", self.label_split_view, "label_split"),
        ]
        ours = [
            path(f"<path:object_id>/{route}", self.admin_site.admin_view(view), name=f"{prefix}_{name}")
            for route, view, name in views
        ]
        return [*ours, *super().get_urls()]

    def _prompt_or_404(self, request: HttpRequest, object_id: str, *, change: bool) -> Prompt:
        prompt = self.get_object(request, unquote(object_id))
        if prompt is None:
            raise Http404("Prompt not found.")
        allowed = self.has_change_permission(request, prompt) if change else self.has_view_permission(request, prompt)
        if not allowed:
            raise PermissionDenied
        return prompt

    def _url(self, name: str, prompt: Prompt) -> str:
        return reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{name}", args=[prompt.pk])

    def _page_context(self, request: HttpRequest, prompt: Prompt, title: str) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "opts": self.opts,
            "original": prompt,
            "prompt": prompt,
        }

    def _editor(self, prompt: Prompt, data: Any = None) -> VersionEditor:
        known = PromptVersion.objects.filter(prompt__project=prompt.project).values_list("model", flat=True).distinct()
        choices = model_choices(known=list(known[:200]))
        if data is not None:
            return VersionEditor(data=data, model_choices=choices)
        latest = PromptVersion.objects.filter(prompt=prompt).order_by("-number").first()
        return VersionEditor.for_version(latest, model_choices=choices)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Prompt | None = None,
    ) -> Any:
        if obj is not None and obj.pk is not None:
            context.update(self._labels_context(obj))
            if obj.archived_at is None and self.has_change_permission(request, obj):
                context.update(editor=self._editor(obj), editor_url=self._url("new_version", obj))
                context.update(
                    label_move_url=self._url("label_move", obj),
                    label_rollback_url=self._url("label_rollback", obj),
                    label_split_url=self._url("label_split", obj),
                )
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def _labels_context(self, prompt: Prompt) -> dict[str, Any]:
        """The prompt's labels, each with the version it pointed at before its last move (what a
        roll back returns to), and the latest moves."""
        history = list(selectors.label_history(prompt=prompt)[:HISTORY_SHOWN])
        last_moves = _last_moves(prompt)
        current = list(selectors.label_list(prompt=prompt))
        labels = [
            {"label": label, "previous": getattr(last_moves.get(label.name), "from_version", None)} for label in current
        ]
        names = sorted({*SUGGESTED_LABELS, *(label.name for label in current)})
        history_url = reverse(f"{self.admin_site.name}:prompts_labelmove_changelist")
        return {
            "prompt_labels": labels,
            "label_names": names,
            "label_history": history,
            "label_history_url": f"{history_url}?prompt__id__exact={prompt.pk}",
            "prompt_versions": list(selectors.version_list(prompt=prompt).values_list("number", "commit_message")),
        }

    def new_version_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The editor's page: GET shows it holding the latest version; POST saves the next version
        through prompt_version_create and goes back to the prompt, or shows the refusal at the fields."""
        prompt = self._prompt_or_404(request, object_id, change=True)
        status = 200
        if request.method == "POST":
            editor = self._editor(prompt, data=request.POST)
            if editor.is_valid():
                try:
                    staff_role_check(
                        user=request.user,  # type: ignore[arg-type]
                        project=prompt.project,
                        minimum=Role.EDITOR,
                        action="creating prompt versions",
                    )
                    version = services.prompt_version_create(
                        prompt=prompt,
                        created_by=request.user,  # type: ignore[arg-type]
                        **editor.version_fields(),
                    )
                except DomainError as exc:
                    editor.add_service_error(exc)
                    status = int(exc.status_code)
                else:
                    self.log_change(request, prompt, f"Saved version {version.number}.")
                    compare = compare_query(self._url("compare", prompt), a=version.number - 1, b=version.number)
                    link = format_html(' <a href="{}">Compare with v{}</a>', compare, version.number - 1)
                    messages.success(
                        request, format_html("Saved as v{}.{}", version.number, link if version.number > 1 else "")
                    )
                    return HttpResponseRedirect(self._url("change", prompt))
            else:
                status = 400
        else:
            editor = self._editor(prompt)
        context = self._page_context(request, prompt, f"New version of {prompt}")
        context.update(editor=editor, editor_url=self._url("new_version", prompt))
        return TemplateResponse(request, self.new_version_template, context, status=status)

    def label_move_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """`?label=<name>&version=<number>`: GET shows what the move changes (the diff of the label's
        current version and the new one); POST moves it through label_move."""
        prompt = self._prompt_or_404(request, object_id, change=True)
        form = LabelMoveForm(request.POST if request.method == "POST" else request.GET, prompt=prompt)
        context = self._page_context(request, prompt, f"Move a label of {prompt}")
        context.update(form=form, error=None, current=None, target=None, diff=None)
        if not form.is_valid():
            return TemplateResponse(request, self.label_move_template, context, status=400)
        label, target = form.cleaned_data["label"], form.cleaned_data["version"]
        current = PromptLabel.objects.filter(prompt=prompt, name=label).select_related("version").first()
        current_version = current.version if current else None
        context.update(
            label=label,
            current=current_version,
            target=target,
            a=current_version or target,
            b=target,
            diff=version_diff(current_version or target, target),
            protected=label in prompt.project.protected_labels,
        )
        if request.method == "POST":
            try:
                self._move(request, prompt, label=label, number=target.number, verb="moved")
            except DomainError as exc:
                context["error"] = exc.message
                return TemplateResponse(request, self.label_move_template, context, status=int(exc.status_code))
            return HttpResponseRedirect(self._url("change", prompt) + "#prompt-labels")
        return TemplateResponse(request, self.label_move_template, context)

    def label_rollback_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """One click: points `label` back at the version it pointed at before its last move."""
        prompt = self._prompt_or_404(request, object_id, change=True)
        label = request.POST.get("label", "")
        previous = getattr(_last_moves(prompt).get(label), "from_version", None)
        if previous is None:
            messages.error(request, f"The label {label!r} has no earlier version to roll back to.")
        else:
            try:
                self._move(request, prompt, label=label, number=previous.number, verb="rolled back")
            except DomainError as exc:
                messages.error(request, exc.message)
        return HttpResponseRedirect(self._url("change", prompt) + "#prompt-labels")

    def _move(self, request: HttpRequest, prompt: Prompt, *, label: str, number: int, verb: str) -> None:
        """Moves the label as the staff user: a protected label needs their admin role in the project
        (a superuser may). Raises the service's refusal."""
        user: Any = request.user
        role = label_role_check(user=user, project=prompt.project, label=label)
        before = PromptLabel.objects.filter(prompt=prompt, name=label).values_list("version__number", flat=True).first()
        services.label_move(prompt=prompt, label=label, version_number=number, moved_by=user, role=role)
        origin = f" from v{before}" if before is not None else ""
        self.log_change(request, prompt, f"Label {label} {verb}{origin} to v{number}.")
        messages.success(request, f"{label} {verb}{origin} to v{number}.")

    def label_split_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """`?label=<name>`: GET shows the label's split as one row per arm (version and weight); POST
        sets, changes or (`clear`, or every row blank) clears it through label_split_set and goes back
        to the prompt, or shows the refusal at the fields it names."""
        prompt = self._prompt_or_404(request, object_id, change=True)
        query = request.POST if request.method == "POST" else request.GET
        label = PromptLabel.objects.filter(prompt=prompt, name=query.get("label", "")).select_related("version").first()
        if label is None:
            raise Http404("This prompt has no such label.")
        versions = list(selectors.version_list(prompt=prompt).values_list("number", "commit_message"))
        status = 200
        if request.method == "POST":
            editor = SplitEditor(label=label, versions=versions, data=request.POST)
            clear = "clear" in request.POST
            if editor.is_valid(clear=clear):
                try:
                    split = [] if clear else editor.split()
                    self._split(request, prompt, label=label, number=editor.version(), split=split)
                except DomainError as exc:
                    editor.add_service_error(exc)
                    status = int(exc.status_code)
                else:
                    return HttpResponseRedirect(self._url("change", prompt) + "#prompt-labels")
            else:
                status = 400
        else:
            editor = SplitEditor(label=label, versions=versions)
        context = self._page_context(request, prompt, f"Split {label.name} of {prompt}")
        context.update(
            label=label,
            editor=editor,
            protected=label.name in prompt.project.protected_labels,
            split_total=SPLIT_TOTAL,
            max_arms=MAX_SPLIT_ARMS,
        )
        return TemplateResponse(request, self.label_split_template, context, status=status)

    def _split(
        self, request: HttpRequest, prompt: Prompt, *, label: PromptLabel, number: int, split: list[dict[str, Any]]
    ) -> None:
        """Sets the label's split as the staff user, with the role a move of it needs. Raises the
        service's refusal."""
        user: Any = request.user
        role = label_role_check(user=user, project=prompt.project, label=label.name)
        before = split_text(label.split)
        moved = services.label_split_set(
            prompt=prompt, label=label.name, version_number=number, split=split, moved_by=user, role=role
        )
        if moved.split:
            text = f"{label.name} split: {split_text(moved.split)}."
        else:
            text = f"{label.name} {'split cleared' if label.split else 'has no split'}: all its runs go to v{number}."
        self.log_change(request, prompt, f"Label {label.name} split from {before} to {split_text(moved.split)}.")
        messages.success(request, text)

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
    list_display = ["__str__", "prompt", "name", "version", "split_arms", "updated_at"]
    list_filter = ["name"]
    search_fields = ["prompt__name", "name"]
    list_select_related = ["prompt", "version"]
    raw_id_fields = ["prompt", "version"]

    def get_readonly_fields(self, request: HttpRequest, obj: PromptLabel | None = None) -> Any:
        return ["prompt", "name"] if obj else []

    @admin.display(description="split")
    def split_arms(self, obj: PromptLabel) -> str:
        return split_text(obj.split)

    def get_form(
        self, request: HttpRequest, obj: PromptLabel | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form: Any = super().get_form(request, obj, change=change, **kwargs)
        form.acting_user = request.user
        return form

    def save_model(self, request: HttpRequest, obj: PromptLabel, form: Any, change: bool) -> None:
        # Every move, from the admin too, goes through the service so it lands in the history; the
        # form checked the role a protected label needs.
        user: Any = request.user
        moved = services.label_move(
            prompt=obj.prompt,
            label=obj.name,
            version_number=obj.version.number,
            moved_by=user,
            role=label_role_check(user=user, project=obj.prompt.project, label=obj.name),
        )
        obj.pk = moved.pk
        obj._state.adding = False


@admin.register(LabelMove)
class LabelMoveAdmin(ReadOnlyAdmin):
    list_display = ["prompt", "label", "from_version", "to_version", "moved_by", "created_at"]
    list_filter = ["label", "created_at"]
    search_fields = ["prompt__name", "label", "moved_by__username"]
    list_select_related = ["prompt", "from_version", "to_version", "moved_by"]
