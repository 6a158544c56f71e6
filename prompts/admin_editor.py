"""The admin's version editor: a prompt's next version as fields (one row per chat message, a table
of variables, the model as a choice of the enabled providers' models, the parameters as fields) or,
for those who choose it, as raw JSON.

It only shapes input: the version is saved by prompts.services.prompt_version_create, so its rules
and messages are the API's, and a refusal is shown at the field it names (`messages.1.content` is
the second message row's content, `variables.tone` the row declaring `tone`, `params.top_p` the top_p
field).
"""

import json
from typing import Any

from django import forms
from django.forms import formset_factory

from llmops.errors import DomainError
from prompts.models import PromptVersion
from prompts.rendering import CHAT_ROLES, VARIABLE_TYPES
from providers.checks import MODEL_HELP
from providers.selectors import ModelChoices

# The model select's last option: the model is typed in `model_other` (a Hugging Face model, say).
OTHER_MODEL = "__other__"
FIELDS_MODE, JSON_MODE = "fields", "json"
# The keys the raw JSON takes: a version as the API shows it, without what the server assigns.
JSON_KEYS = ("kind", "template", "messages", "variables", "model", "params")


def _number(**attrs: Any) -> forms.NumberInput:
    return forms.NumberInput(attrs={"step": "any", "class": "vIntegerField", **attrs})


class VersionForm(forms.Form):
    """The version's own fields; its messages and variables are formsets (VersionEditor)."""

    mode = forms.ChoiceField(
        choices=((FIELDS_MODE, "Fields"), (JSON_MODE, "Raw JSON")),
        initial=FIELDS_MODE,
        widget=forms.RadioSelect(attrs={"class": "editor-mode"}),
        label="Edit as",
    )
    kind = forms.ChoiceField(
        choices=PromptVersion.Kind.choices,
        initial=PromptVersion.Kind.TEXT,
        widget=forms.RadioSelect(attrs={"class": "editor-kind"}),
    )
    template = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"class": "editor-code", "rows": 10, "spellcheck": "false"}),
        help_text="Jinja2: {{ name }} inserts a declared variable.",
    )
    # Not a ChoiceField: a model the listing stopped offering since the page was shown must still reach
    # the service, whose message (unknown provider, disabled) is the one to show.
    model = forms.CharField(required=False, widget=forms.Select(attrs={"class": "editor-model"}))
    model_other = forms.CharField(
        required=False, label="Other model", help_text=MODEL_HELP, widget=forms.TextInput(attrs={"size": 50})
    )
    temperature = forms.FloatField(required=False, widget=_number(min=0, max=2), help_text="0 to 2")
    top_p = forms.FloatField(required=False, widget=_number(min=0, max=1), help_text="0 to 1")
    max_tokens = forms.IntegerField(required=False, widget=_number(min=1, step=1), help_text="Completion cap")
    frequency_penalty = forms.FloatField(required=False, widget=_number(min=-2, max=2), help_text="-2 to 2")
    presence_penalty = forms.FloatField(required=False, widget=_number(min=-2, max=2), help_text="-2 to 2")
    seed = forms.IntegerField(required=False, widget=_number(step=1))
    stop = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 30}),
        help_text="Stop sequences, one per line (at most 4).",
    )
    raw_json = forms.CharField(
        required=False,
        label="Version as JSON",
        widget=forms.Textarea(attrs={"class": "editor-code", "rows": 18, "spellcheck": "false"}),
        help_text=f"An object with {', '.join(JSON_KEYS)}: either template (kind text) or messages (kind chat).",
    )
    commit_message = forms.CharField(
        required=False, max_length=500, widget=forms.TextInput(attrs={"size": 80}), help_text="What changed, and why."
    )

    PARAMS = ("temperature", "top_p", "max_tokens", "frequency_penalty", "presence_penalty", "seed", "stop")

    def __init__(self, *args: Any, model_choices: ModelChoices, **kwargs: Any):
        super().__init__(*args, **kwargs)
        current = self["model"].value()
        offered = {value for _, group in model_choices for value, _ in group}
        choices: list[Any] = list(model_choices)
        if current and current != OTHER_MODEL and current not in offered:
            # The version's model, though no enabled provider lists it now: keep it selectable.
            choices.insert(0, ("Current", [(current, current)]))
        choices.append(("Other", [(OTHER_MODEL, "Other model (type it below)")]))
        self.fields["model"].widget.choices = choices

    def clean_raw_json(self) -> dict[str, Any] | None:
        if self.data.get(self.add_prefix("mode")) != JSON_MODE:
            return None
        raw = self.cleaned_data["raw_json"]
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}.") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Must be a JSON object.")
        unknown = sorted(set(value) - set(JSON_KEYS))
        if unknown:
            raise forms.ValidationError(f"Unknown keys: {', '.join(unknown)}. Known: {', '.join(JSON_KEYS)}.")
        if "template" in value and not isinstance(value["template"], str):
            raise forms.ValidationError("template: Must be a string.")
        kind = value.get("kind")
        if kind is not None and kind != (PromptVersion.Kind.TEXT if "template" in value else PromptVersion.Kind.CHAT):
            raise forms.ValidationError('kind: Must be "text" with a template, or "chat" with messages.')
        return value

    def chosen_model(self) -> str:
        model = self.cleaned_data.get("model") or ""
        return self.cleaned_data.get("model_other", "").strip() if model == OTHER_MODEL else model

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for name in self.PARAMS:
            value = self.cleaned_data.get(name)
            if name == "stop":
                lines = [line for line in (value or "").splitlines() if line]
                if lines:
                    params["stop"] = lines
            elif value is not None:
                params[name] = value
        return params


class MessageForm(forms.Form):
    role = forms.ChoiceField(choices=[(role, role) for role in CHAT_ROLES], initial="user")
    content = forms.CharField(
        required=False, strip=False, widget=forms.Textarea(attrs={"class": "editor-code", "rows": 4, "cols": 80})
    )


class VariableForm(forms.Form):
    name = forms.CharField(max_length=64, widget=forms.TextInput(attrs={"size": 16}))
    type = forms.ChoiceField(choices=[(name, name) for name in VARIABLE_TYPES], initial="string")
    required = forms.BooleanField(required=False, initial=True)
    default = forms.CharField(
        required=False,
        widget=forms.TextInput(attrs={"size": 20}),
        help_text="Blank: none. Not a string: as JSON (3, true, [1, 2]).",
    )
    description = forms.CharField(required=False, widget=forms.TextInput(attrs={"size": 30}))

    def clean_default(self) -> Any:
        raw = self.cleaned_data["default"]
        if raw == "" or self.cleaned_data.get("type", "string") == "string":
            return raw
        try:
            return json.loads(raw)
        except ValueError:
            raise forms.ValidationError(f"Not valid JSON for a {self.cleaned_data['type']}.") from None

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"type": self.cleaned_data["type"], "required": self.cleaned_data["required"]}
        if self.cleaned_data["default"] != "":
            spec["default"] = self.cleaned_data["default"]
        if self.cleaned_data["description"]:
            spec["description"] = self.cleaned_data["description"]
        return spec


class _VariableFormSet(forms.BaseFormSet):
    def clean(self) -> None:
        seen: set[str] = set()
        for form in self.forms:
            if not hasattr(form, "cleaned_data") or form.cleaned_data.get("DELETE"):
                continue
            name = form.cleaned_data.get("name")
            if name in seen:
                form.add_error("name", f"{name!r} is declared twice.")
            seen.add(name)


MessageFormSet = formset_factory(MessageForm, extra=0, can_delete=True)
VariableFormSet = formset_factory(VariableForm, formset=_VariableFormSet, extra=0, can_delete=True)

# Where a problem with a variable's spec (prompts.rendering.normalize_variables) shows in its row.
_VARIABLE_PROBLEM_FIELDS = (
    ("type", "type"),
    ("required", "required"),
    ("default", "default"),
    ("description", "description"),
)


class VersionEditor:
    """The version form and its two formsets, bound together; `version_fields()` are the keyword
    arguments of prompt_version_create, `add_service_error()` puts its refusal at the fields."""

    def __init__(self, *, model_choices: ModelChoices, data: Any = None, initial: dict[str, Any] | None = None):
        initial = initial or {}
        self.form = VersionForm(data, model_choices=model_choices, initial=initial.get("form"))
        self.messages = MessageFormSet(data, prefix="messages", initial=initial.get("messages"))
        self.variables = VariableFormSet(data, prefix="variables", initial=initial.get("variables"))
        # The rows sent to the service, in its indexing (deleted rows left out).
        self._sent_messages: list[MessageForm] = []
        self._sent_variables: dict[str, VariableForm] = {}

    @classmethod
    def for_version(cls, version: PromptVersion | None, *, model_choices: ModelChoices) -> "VersionEditor":
        """An editor holding `version` (None: a blank first version) for the next one."""
        if version is None:
            first = model_choices[0][1][0][0] if model_choices and model_choices[0][1] else ""
            blank = {"kind": PromptVersion.Kind.TEXT, "template": "", "variables": {}, "model": first, "params": {}}
            return cls(model_choices=model_choices, initial={"form": {"model": first, "raw_json": _dumps(blank)}})
        params = dict(version.params)
        stop = params.pop("stop", None)
        form = {
            "kind": version.kind,
            "template": version.template,
            "model": version.model,
            **params,
            "stop": "\n".join([stop] if isinstance(stop, str) else stop or []),
            "raw_json": _dumps(version_json(version)),
        }
        variables = [
            {
                "name": name,
                "type": spec["type"],
                "required": spec.get("required", True),
                "default": _default_text(spec),
                "description": spec.get("description", ""),
            }
            for name, spec in version.variables.items()
        ]
        messages = [{"role": m["role"], "content": m["content"]} for m in version.messages]
        return cls(model_choices=model_choices, initial={"form": form, "messages": messages, "variables": variables})

    @property
    def json_mode(self) -> bool:
        return self.form.data.get("mode") == JSON_MODE if self.form.is_bound else False

    def is_valid(self) -> bool:
        if not self.form.is_valid():
            return False
        if self.json_mode:
            return True
        is_chat = self.form.cleaned_data["kind"] == PromptVersion.Kind.CHAT
        # A text version ignores its message rows; both formsets still check their management data.
        messages_ok = self.messages.is_valid() or (not is_chat and self.messages.management_form.is_valid())
        return bool(messages_ok and self.variables.is_valid())

    def version_fields(self) -> dict[str, Any]:
        """prompt_version_create's content, model, variables and params (and the commit message)."""
        commit_message = self.form.cleaned_data["commit_message"]
        if self.json_mode:
            raw = self.form.cleaned_data["raw_json"]
            # The whole version is given: what it leaves out is empty, not taken from the latest one.
            return {
                "template": raw.get("template"),
                "messages": raw.get("messages"),
                "model": raw.get("model", ""),
                "variables": raw.get("variables", {}),
                "params": raw.get("params", {}),
                "commit_message": commit_message,
            }
        self._sent_variables = {form.cleaned_data["name"]: form for form in self.variables.forms if not _removed(form)}
        fields: dict[str, Any] = {
            "model": self.form.chosen_model(),
            "variables": {name: form.spec() for name, form in self._sent_variables.items()},
            "params": self.form.params(),
            "commit_message": commit_message,
        }
        if self.form.cleaned_data["kind"] == PromptVersion.Kind.CHAT:
            self._sent_messages = [form for form in self.messages.forms if not _removed(form)]
            fields["messages"] = [
                {"role": form.cleaned_data["role"], "content": form.cleaned_data["content"]}
                for form in self._sent_messages
            ]
        else:
            fields["template"] = self.form.cleaned_data["template"]
        return fields

    def add_service_error(self, exc: DomainError) -> None:
        """Shows the service's refusal at the fields it names, in its own words."""
        if not exc.fields:
            self.form.add_error(None, exc.message)
        for name, problems in exc.fields.items():
            for problem in problems:
                self._place(name, problem)

    def _place(self, name: str, problem: str) -> None:
        if self.json_mode:
            self.form.add_error("raw_json", f"{name}: {problem}")
            return
        head, _, rest = name.partition(".")
        index = rest.partition(".")[0]
        if head == "template" or (head == "model" and not rest):
            field = "model_other" if head == "model" and self.form.cleaned_data.get("model") == OTHER_MODEL else head
            self.form.add_error(field, problem)
        elif head == "params" and rest in self.form.fields:
            self.form.add_error(rest, problem)
        elif head == "messages" and index.isdigit() and int(index) < len(self._sent_messages):
            self._sent_messages[int(index)].add_error("content", problem)
        elif head == "variables" and rest in self._sent_variables:
            row = self._sent_variables[rest]
            field = next((f for prefix, f in _VARIABLE_PROBLEM_FIELDS if problem.startswith(prefix)), "name")
            row.add_error(field, problem)
        else:
            self.form.add_error(None, f"{name}: {problem}")

    @property
    def has_errors(self) -> bool:
        formsets = [] if self.json_mode else [self.messages, self.variables]
        return bool(self.form.errors) or any(fs.is_bound and (fs.total_error_count()) for fs in formsets)


def _removed(form: forms.Form) -> bool:
    """Whether the row was removed (its delete box checked, by hand or by editor.js)."""
    return bool(form.cleaned_data.get("DELETE"))


def version_json(version: PromptVersion) -> dict[str, Any]:
    """A version as the raw-JSON editor shows it."""
    content: dict[str, Any] = (
        {"template": version.template} if version.kind == PromptVersion.Kind.TEXT else {"messages": version.messages}
    )
    return {
        "kind": version.kind,
        **content,
        "variables": version.variables,
        "model": version.model,
        "params": version.params,
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _default_text(spec: dict[str, Any]) -> str:
    if "default" not in spec:
        return ""
    default = spec["default"]
    return default if spec["type"] == "string" else json.dumps(default, ensure_ascii=False)
