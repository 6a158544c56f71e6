""" "Run this version" in the admin: a form built from a version's declared variables, a run created
through runs.services.run_create (the API's checks, limits and budgets), and a page that shows its
result once a worker finished it.

Runs are created in the version's project, so staff need what the API asks of its users there: the
editor role (or to be a superuser).
"""

import json
import uuid
from typing import Any

from django import forms
from django.contrib.admin import ModelAdmin, helpers
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import escape

from accounts.models import Role, User, role_at_least
from accounts.services import member_role
from llmops.errors import DomainError
from llmops.money import money_str
from prompts.models import PromptVersion
from runs import services
from runs.models import Run

VARIABLES_PREFIX = "variables"
PARAMS_PREFIX = "params"
# How often the result page reloads while the run is queued or running, in seconds.
REFRESH_S = 1


def cost_str(run: Run) -> str:
    """The run's cost in USD as people read it; "-" when it has no cost entry or no known price."""
    cost_log = getattr(run, "cost_log", None)  # a missing reverse one-to-one raises, hence getattr
    if cost_log is None or not cost_log.cost_known or cost_log.total_cost is None:
        return "-"
    return money_str(cost_log.total_cost)


class _NumberField(forms.FloatField):
    """A JSON number: an integer stays an int (3, not 3.0), anything else a finite float."""

    def to_python(self, value: Any) -> Any:
        number = super().to_python(value)
        if number is not None and str(value).strip().lstrip("+-").isdigit():
            return int(str(value).strip())
        return number


class _JSONValueField(forms.JSONField):
    """An array or object as JSON; no value shows as an empty input, not `null`."""

    def prepare_value(self, value: Any) -> Any:
        return "" if value is None else super().prepare_value(value)


def _variable_field(spec: dict[str, Any]) -> forms.Field:
    """The typed input of one declared variable (prompts.rendering's schema), its default filled in."""
    type_name = spec["type"]
    # A default makes a variable optional whatever `required` says: rendering falls back to it.
    required = bool(spec.get("required")) and "default" not in spec and type_name != "boolean"
    described = [spec.get("description", ""), f"Type: {type_name}."]
    # Escaped here: the admin's fieldset template shows help texts as safe HTML.
    options: dict[str, Any] = {"required": required, "help_text": escape(" ".join(filter(None, described)))}
    if "default" in spec:
        options["initial"] = spec["default"]
    if type_name == "string":
        return forms.CharField(strip=False, widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), **options)
    if type_name == "integer":
        return forms.IntegerField(**options)
    if type_name == "number":
        return _NumberField(widget=forms.NumberInput(attrs={"step": "any"}), **options)
    if type_name == "boolean":
        return forms.BooleanField(**options)
    # array or object: JSON, checked against the type by the service, which names the variable.
    return _JSONValueField(widget=forms.Textarea(attrs={"rows": 4, "cols": 80}), **options)


class VariablesForm(forms.Form):
    """One input per variable the version declares; `values()` is what the run is given."""

    def __init__(self, data: QueryDict | None, *, variables: dict[str, dict[str, Any]]):
        super().__init__(data, prefix=VARIABLES_PREFIX)
        self.specs = variables
        for name, spec in variables.items():
            self.fields[name] = _variable_field(spec)
            self.fields[name].label = name  # as the template names it

    def values(self) -> dict[str, Any]:
        """The cleaned values; an input left empty is left out, so the default (or `required`) applies."""
        values: dict[str, Any] = {}
        for name, spec in self.specs.items():
            if spec["type"] == "boolean":
                values[name] = bool(self.cleaned_data.get(name))
            elif str(self.data.get(self.add_prefix(name), "")) != "":
                values[name] = self.cleaned_data.get(name)
        return values


class ParamsForm(forms.Form):
    """Overrides of the version's parameters for this run; empty keeps the version's."""

    max_tokens = forms.IntegerField(required=False, help_text="Most tokens the reply may have.")
    temperature = _NumberField(
        required=False, widget=forms.NumberInput(attrs={"step": "any"}), help_text="Sampling temperature, 0 to 2."
    )

    def __init__(self, data: QueryDict | None, *, version: PromptVersion):
        initial = {name: version.params[name] for name in self.base_fields if name in version.params}
        super().__init__(data, prefix=PARAMS_PREFIX, initial=initial)

    def overrides(self) -> dict[str, Any]:
        return {name: value for name, value in self.cleaned_data.items() if value is not None}


def _show_domain_error(exc: DomainError, variables: VariablesForm, params: ParamsForm) -> list[str]:
    """Puts a service's field errors at their inputs; returns the messages no input can show."""
    unplaced: list[str] = []
    for key, problems in exc.fields.items():
        prefix, _, name = key.partition(".")
        form: forms.Form | None = {VARIABLES_PREFIX: variables, PARAMS_PREFIX: params}.get(prefix)
        if form is not None and name in form.fields:
            form.add_error(name, problems)
        else:
            unplaced.extend(f"{key}: {problem}" for problem in problems)
    return unplaced


class TryPages:
    """The try pages of a run admin: `try/<version_id>/` (the form) and `try/<version_id>/result/<run_id>/`."""

    form_template = "admin/runs/run/try.html"
    result_template = "admin/runs/run/try_result.html"

    def __init__(self, model_admin: "ModelAdmin[Run]"):
        self.model_admin = model_admin
        self.site = model_admin.admin_site
        self.url_name = f"{model_admin.opts.app_label}_{model_admin.opts.model_name}"

    def urls(self) -> list[URLPattern]:
        return [
            path("try/<uuid:version_id>/", self.site.admin_view(self.form_view), name=f"{self.url_name}_try"),
            path(
                "try/<uuid:version_id>/result/<uuid:run_id>/",
                self.site.admin_view(self.result_view),
                name=f"{self.url_name}_try_result",
            ),
        ]

    def _url(self, suffix: str, *args: Any) -> str:
        return reverse(f"{self.site.name}:{self.url_name}_{suffix}", args=args)

    def _context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {**self.site.each_context(request), "opts": self.model_admin.opts, "subtitle": None, **extra}

    def _refused(self, request: HttpRequest, version: PromptVersion | None, message: str) -> HttpResponse:
        context = self._context(request, title="Run this version", version=version, refusal=message)
        return TemplateResponse(request, self.form_template, context, status=403)

    def _refusal(self, request: HttpRequest, version: PromptVersion) -> str | None:
        """Why this user may not run the version here, or None. The API's rule: the editor role."""
        user = request.user
        if user.is_superuser:
            return None
        if not self.model_admin.has_view_permission(request):
            return "You do not have permission to view runs."
        project = version.prompt.project
        role = member_role(project=project, user=user)  # type: ignore[arg-type]
        if role is None:
            return (
                f"You are not a member of the project {project.slug}: only its editors, admins and owners "
                "(or a superuser) can run its prompts."
            )
        if not role_at_least(role, Role.EDITOR):
            return f"Your role in the project {project.slug} is {role}: running its prompts needs editor or above."
        return None

    def form_view(self, request: HttpRequest, version_id: uuid.UUID) -> HttpResponse:
        """GET: the form, defaults filled in. POST: a run through run_create, then its result page;
        a refusal of the service (validation, budget, ...) is shown on the form, nothing is written."""
        version = PromptVersion.objects.select_related("prompt__project").filter(pk=version_id).first()
        if version is None:
            raise Http404("No such prompt version.")
        refusal = self._refusal(request, version)
        if refusal is not None:
            return self._refused(request, version, refusal)

        data = request.POST if request.method == "POST" else None
        variables = VariablesForm(data, variables=version.variables)
        params = ParamsForm(data, version=version)
        problems: list[str] = []
        if data is not None and variables.is_valid() and params.is_valid():
            try:
                run, _ = services.run_create(
                    project=version.prompt.project,
                    created_by=request.user if isinstance(request.user, User) else None,
                    api_key=None,
                    prompt_version_id=version.pk,
                    variables=variables.values(),
                    params=params.overrides(),
                )
            except DomainError as exc:
                problems = [exc.message, *_show_domain_error(exc, variables, params)]
            else:
                return redirect(self._url("try_result", version.pk, run.pk))
        context = self._context(
            request,
            title=f"Run {version.prompt.name} v{version.number}",
            version=version,
            problems=problems,
            has_errors=bool(problems or variables.errors or params.errors),
            variables_form=_admin_form(variables, "Variables"),
            params_form=_admin_form(params, "Parameters"),
            source=_version_source(version),
        )
        return TemplateResponse(request, self.form_template, context)

    def result_view(self, request: HttpRequest, version_id: uuid.UUID, run_id: uuid.UUID) -> HttpResponse:
        """The run's status; once it finished, its output, tokens, cost and latency. Reloads itself
        every REFRESH_S seconds until then."""
        if not self.model_admin.has_view_permission(request):
            return self._refused(request, None, "You do not have permission to view runs.")
        run = (
            Run.objects.select_related("prompt_version__prompt__project", "cost_log")
            .filter(pk=run_id, prompt_version_id=version_id)
            .first()
        )
        if run is None:
            raise Http404("No such run of this version.")
        version = run.prompt_version
        if version is None:  # unreachable: the run was looked up as one of this version's
            raise Http404("No such run of this version.")
        cost_log = getattr(run, "cost_log", None)
        context = self._context(
            request,
            title=f"Run of {version.prompt.name} v{version.number}",
            version=version,
            run=run,
            refresh_s=REFRESH_S,
            cost=cost_str(run),
            cost_unknown=cost_log is not None and not cost_log.cost_known,
            run_url=self._url("change", run.pk),
            try_url=self._url("try", version.pk),
        )
        response = TemplateResponse(request, self.result_template, context)
        response["Cache-Control"] = "no-store"  # it reloads itself until the run is done
        return response


def _admin_form(form: forms.Form, title: str) -> helpers.AdminForm:
    """The form in one fieldset, for the admin's own fieldset template (the stubs want a ModelForm;
    AdminForm renders any form)."""
    return helpers.AdminForm(form, [(title, {"fields": list(form.fields)})], {})  # type: ignore[arg-type]


def _version_source(version: PromptVersion) -> list[dict[str, str]]:
    """The version's template or messages, as the form shows them for reference."""
    if version.kind == PromptVersion.Kind.TEXT:
        return [{"role": "template", "content": version.template}]
    return [
        {"role": str(message.get("role", "")), "content": str(message.get("content", ""))}
        for message in version.messages
        if isinstance(message, dict)
    ] or [{"role": "messages", "content": json.dumps(version.messages, indent=2)}]
