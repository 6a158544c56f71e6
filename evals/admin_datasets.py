"""Admin of datasets and examples.

Datasets are created, described and deleted through evals.dataset_services, like the API; their
examples are read-only here (they never change) and are appended through `examples_append`: a
JSON Lines / CSV file or one example, from the dataset's "Append examples" page. They are removed
through `examples_remove`: the dataset's page has a box per example, and the boxes checked go to a
confirmation page that removes them as one new version. The runs
changelist gets a "Save as example" action (registered with runs.admin.run_action_register) that
asks for the dataset and saves the selected runs through `examples_from_runs`.
"""

import json
import uuid
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.db.models import OuterRef, QuerySet, Subquery
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from accounts.models import Role
from accounts.staff import staff_role_check
from evals import dataset_files, dataset_selectors, dataset_services
from evals.models import Dataset, DatasetVersion, Example
from llmops.admin import RefusableForm, ServiceRefused, ServiceWritesMixin
from llmops.errors import DomainError
from runs.admin import run_action_register
from runs.models import Run

# The dataset page's form that its examples' boxes belong to (change_form.html): it sits outside the
# dataset's own form, so checking a box changes nothing there.
REMOVE_FORM_ID = "remove-examples-form"


def _editor_check(request: HttpRequest, dataset: Dataset, action: str) -> None:
    staff_role_check(user=request.user, project=dataset.project, minimum=Role.EDITOR, action=action)  # type: ignore[arg-type]


def _problems(exc: DomainError, limit: int = 20) -> list[str]:
    shown = [f"{name}: {'; '.join(problems)}" for name, problems in list(exc.fields.items())[:limit]]
    return [exc.message, *shown]


class DatasetForm(RefusableForm):
    class Meta:
        model = Dataset
        fields = ["project", "name", "description"]


class _LatestExamplesFormSet(BaseInlineFormSet):
    """A dataset may hold 100,000 examples: the page shows the first ones of its latest version."""

    def get_queryset(self) -> QuerySet[Example]:
        if not hasattr(self, "_first_examples"):
            dataset = self.instance
            if dataset.pk is None or dataset.latest_version_number == 0:
                self._first_examples = Example.objects.none()
            else:
                version = dataset_selectors.dataset_version_get(dataset=dataset)
                self._first_examples = dataset_selectors.example_list(version=version)[: ExampleInline.shown]
        return self._first_examples


class _ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DatasetVersionInline(_ReadOnlyInline):
    model = DatasetVersion
    fields = readonly_fields = (
        "number",
        "example_count",
        "added_count",
        "removed_count",
        "note",
        "created_by",
        "created_at",
    )
    ordering = ["-number"]


class ExampleInline(_ReadOnlyInline):
    model = Example
    formset = _LatestExamplesFormSet
    shown = 100
    verbose_name_plural = f"examples of the latest version (the first {shown}, in order)"
    fields = readonly_fields = (
        "position",
        "variables",
        "expected_output",
        "reference",
        "tags",
        "added_in",
        "source_run",
        "remove",
    )
    ordering = ["position"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_fields(request, obj))
        if not request.user.has_perm(f"{self.parent_model._meta.app_label}.change_dataset"):
            fields.remove("remove")
        return fields

    @admin.display(description="remove")
    def remove(self, example: Example) -> SafeString:
        return format_html(
            '<input type="checkbox" name="ids" value="{}" form="{}" class="remove-example" aria-label="Remove {}">',
            example.pk,
            REMOVE_FORM_ID,
            example,
        )


class ExamplesAppendForm(forms.Form):
    """A JSON Lines or CSV file (the API's import formats), or one example typed in."""

    file = forms.FileField(
        required=False, help_text="JSON Lines or CSV, as the API imports (by its name: .csv or not)."
    )
    variables = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}), help_text='A JSON object, e.g. {"question": "..."}.'
    )
    expected_output = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), strip=False)
    reference = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), strip=False)
    tags = forms.CharField(required=False, help_text="Comma-separated.")
    note = forms.CharField(required=False, max_length=dataset_services.MAX_NOTE_LENGTH)

    def clean_variables(self) -> Any:
        text = self.cleaned_data["variables"].strip()
        if not text:
            return {}
        try:
            return json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Invalid JSON: {exc}.") from None

    def example(self) -> dict[str, Any]:
        data = self.cleaned_data
        tags = [tag.strip() for tag in data["tags"].split(",") if tag.strip()]
        return {
            "variables": data["variables"],
            "expected_output": data["expected_output"],
            "reference": data["reference"],
            "tags": tags,
        }


class ExamplesRemoveForm(forms.Form):
    note = forms.CharField(
        required=False,
        max_length=dataset_services.MAX_NOTE_LENGTH,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text="Why they go (the new version's note).",
    )


@admin.register(Dataset)
class DatasetAdmin(ServiceWritesMixin, admin.ModelAdmin):
    form = DatasetForm
    list_display = ["name", "project", "latest_version_number", "example_count", "created_at"]
    list_filter = ["project"]
    search_fields = ["name", "description", "project__slug"]
    list_select_related = ["project"]
    inlines = [DatasetVersionInline, ExampleInline]
    append_template = "admin/evals/dataset/append.html"
    remove_template = "admin/evals/dataset/remove.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Dataset]:
        latest = DatasetVersion.objects.filter(dataset=OuterRef("pk"), number=OuterRef("latest_version_number"))
        return super().get_queryset(request).annotate(_example_count=Subquery(latest.values("example_count")[:1]))

    def get_inlines(self, request: HttpRequest, obj: Dataset | None) -> Any:
        return self.inlines if obj is not None else []  # a new dataset has neither

    def get_readonly_fields(self, request: HttpRequest, obj: Dataset | None = None) -> Any:
        if obj is None:
            return []
        return ["project", "name", "latest_version_number", "last_position", "append_link"]

    def get_fields(self, request: HttpRequest, obj: Dataset | None = None) -> Any:
        if obj is None:
            return ["project", "name", "description"]
        return ["project", "name", "description", "latest_version_number", "append_link"]

    @admin.display(description="examples", ordering="_example_count")
    def example_count(self, dataset: Dataset) -> int:
        return getattr(dataset, "_example_count", None) or 0

    @admin.display(description="append")
    def append_link(self, dataset: Dataset) -> SafeString:
        return format_html('<a href="{}" id="append-examples">Append examples</a>', self._url("append", dataset))

    def _url(self, name: str, dataset: Dataset) -> str:
        return reverse(f"admin:evals_dataset_{name}", args=[dataset.pk], current_app=self.admin_site.name)

    def get_urls(self) -> list[URLPattern]:
        append = path(
            "<path:object_id>/append/", self.admin_site.admin_view(self.append_view), name="evals_dataset_append"
        )
        remove = path(
            "<path:object_id>/remove/", self.admin_site.admin_view(self.remove_view), name="evals_dataset_remove"
        )
        return [append, remove, *super().get_urls()]

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Dataset | None = None,
    ) -> Any:
        if obj is not None and obj.latest_version_number and self.has_change_permission(request, obj):
            context.update(remove_url=self._url("remove", obj), remove_form_id=REMOVE_FORM_ID)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def save_model(self, request: HttpRequest, obj: Dataset, form: Any, change: bool) -> None:
        try:
            _editor_check(request, obj, "changing datasets")
            if change:
                dataset_services.dataset_update(project=obj.project, dataset=obj, description=obj.description)
                return
            created = dataset_services.dataset_create(
                project=obj.project,
                created_by=request.user,  # type: ignore[arg-type]
                name=obj.name,
                description=obj.description,
            )
        except DomainError as exc:
            raise ServiceRefused(exc) from exc
        for field in Dataset._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding = False

    def delete_model(self, request: HttpRequest, obj: Dataset) -> None:
        try:
            _editor_check(request, obj, "deleting datasets")
            dataset_services.dataset_delete(project=obj.project, dataset=obj)
        except DomainError as exc:
            raise ServiceRefused(exc) from exc

    def append_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET shows the form; POST appends its file (or its one example) as one new version."""
        dataset = self.get_object(request, unquote(object_id))
        if dataset is None or not self.has_change_permission(request, dataset):
            raise Http404("No such dataset.")
        form = ExamplesAppendForm(request.POST or None, request.FILES or None)
        problems: list[str] = []
        status = 200
        if request.method == "POST":
            if form.is_valid():
                upload = form.cleaned_data["file"]

                def append() -> DatasetVersion:
                    if upload is not None:
                        lines = dataset_files.text_lines(upload)
                        csv_file = upload.name.lower().endswith(".csv")
                        rows: Any = (
                            dataset_files.rows_from_csv(lines) if csv_file else dataset_files.rows_from_jsonl(lines)
                        )
                    else:
                        rows = [form.example()]
                    return dataset_services.examples_append(
                        project=dataset.project,
                        dataset=dataset,
                        examples=rows,
                        created_by=request.user,  # type: ignore[arg-type]
                        note=form.cleaned_data["note"],
                    )

                done, problems, status = self._version_write(
                    request, dataset, action="appending examples", write=append, verb="added"
                )
                if done is not None:
                    return done
            else:
                status = 400
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "dataset": dataset,
            "form": form,
            "problems": problems,
            "title": f"Append examples to {dataset.name}",
        }
        return TemplateResponse(request, self.append_template, context, status=status)

    def _version_write(
        self, request: HttpRequest, dataset: Dataset, *, action: str, write: Callable[[], DatasetVersion], verb: str
    ) -> tuple[HttpResponse | None, list[str], int]:
        """Writes a new version with `write` as the staff user (an editor of the dataset's project):
        the redirect back to the dataset, or None with the refusal's problems and status."""
        try:
            _editor_check(request, dataset, action)
            version = write()
        except DomainError as exc:
            return None, _problems(exc), int(exc.status_code)
        count = version.added_count if verb == "added" else version.removed_count
        self.log_change(request, dataset, f"Examples {verb}: version {version.number}.")
        messages.success(request, f"Version {version.number}: {count} example(s) {verb}.")
        return HttpResponseRedirect(self._url("change", dataset)), [], 200

    def remove_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """`?ids=<example id>&...` (the boxes checked on the dataset's page): GET shows the examples to
        remove; POST removes them through examples_remove as one new version and goes back to the
        dataset, or shows the refusal."""
        dataset = self.get_object(request, unquote(object_id))
        if dataset is None or not self.has_change_permission(request, dataset):
            raise Http404("No such dataset.")
        posted = request.method == "POST"
        ids = (request.POST if posted else request.GET).getlist("ids")
        form = ExamplesRemoveForm(request.POST if posted else None)
        problems: list[str] = []
        status = 200
        if not ids:
            problems = ["Select the examples to remove: check their boxes on the dataset's page."]
            status = 400
        elif posted:
            if form.is_valid():
                done, problems, status = self._version_write(
                    request,
                    dataset,
                    action="removing examples",
                    write=lambda: dataset_services.examples_remove(
                        project=dataset.project,
                        dataset=dataset,
                        ids=ids,
                        created_by=request.user,  # type: ignore[arg-type]
                        note=form.cleaned_data["note"],
                    ),
                    verb="removed",
                )
                if done is not None:
                    return done
            else:
                status = 400
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "dataset": dataset,
            "form": form,
            "ids": ids,
            "selected": [
                (example, json.dumps(example.variables, ensure_ascii=False)) for example in self._selected(dataset, ids)
            ],
            "problems": problems,
            "title": f"Remove examples from {dataset.name}",
        }
        return TemplateResponse(request, self.remove_template, context, status=status)

    def _selected(self, dataset: Dataset, ids: list[str]) -> list[Example]:
        """The examples of the latest version among `ids`, in order (an id that is not one is left
        to examples_remove to name)."""
        pks = []
        for value in ids[: dataset_services.MAX_REMOVED_PER_CALL]:
            try:
                pks.append(uuid.UUID(value))
            except ValueError:
                continue
        if not pks or dataset.latest_version_number == 0:
            return []
        version = dataset_selectors.dataset_version_get(dataset=dataset)
        return list(dataset_selectors.example_list(version=version).filter(pk__in=pks)[: ExampleInline.shown])


class SaveAsExampleForm(forms.Form):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none())
    tags = forms.CharField(required=False, help_text="Comma-separated, for every example saved.")

    def __init__(self, *args: Any, datasets: QuerySet[Dataset], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = datasets  # type: ignore[attr-defined]


@admin.action(description="Save as example (in a dataset)")
def save_as_example(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Run]) -> HttpResponse | None:
    """Asks for the dataset (of the runs' project), then saves the selected runs as examples of it
    through evals.dataset_services.examples_from_runs: one new version, or nothing if any is refused."""
    project_ids = set(queryset.values_list("project_id", flat=True))
    if len(project_ids) != 1:
        modeladmin.message_user(
            request, "Select runs of one project: a dataset holds one project's examples.", messages.ERROR
        )
        return None
    datasets = Dataset.objects.filter(project_id__in=project_ids).order_by("name")
    form = SaveAsExampleForm(request.POST if "apply" in request.POST else None, datasets=datasets)
    problems: list[str] = []
    if form.is_valid():
        dataset = form.cleaned_data["dataset"]
        tags = [tag.strip() for tag in form.cleaned_data["tags"].split(",") if tag.strip()]
        try:
            _editor_check(request, dataset, "adding examples")
            version = dataset_services.examples_from_runs(
                project=dataset.project,
                dataset=dataset,
                runs=list(queryset.order_by("created_at")),
                created_by=request.user,  # type: ignore[arg-type]
                tags=tags,
            )
        except DomainError as exc:
            problems = _problems(exc)
        else:
            link = reverse("admin:evals_dataset_change", args=[dataset.pk], current_app=modeladmin.admin_site.name)
            modeladmin.message_user(
                request,
                format_html(
                    'Saved {} run(s) as examples: <a href="{}">{} v{}</a>.',
                    version.added_count,
                    link,
                    dataset.name,
                    version.number,
                ),
                messages.SUCCESS,
            )
            return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": modeladmin.opts,
        "title": "Save runs as examples",
        "form": form,
        "runs": queryset,
        "problems": problems,
        "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
        "select_across": request.POST.get("select_across", "0"),
    }
    return TemplateResponse(request, "admin/evals/dataset/save_as_example.html", context)


run_action_register(save_as_example)
