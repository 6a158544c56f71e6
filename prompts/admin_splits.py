"""The admin's page for a label's A/B split: the label's main version and one row per arm (version
and weight), bound together so that prompts.services.label_split_set's refusal shows at the field it
names. The page itself is PromptAdmin.label_split_view (prompts/admin.py)."""

from typing import Any

from django import forms
from django.forms import formset_factory

from llmops.errors import DomainError
from prompts.models import PromptLabel
from prompts.splits import MAX_SPLIT_ARMS, SPLIT_TOTAL


def split_text(split: list[dict[str, Any]]) -> str:
    """A split as staff read it: "v2 90%, v3 10%" ("-" for none)."""
    return ", ".join(f"v{arm['version']} {arm['weight']}%" for arm in split) or "-"


class LabelSplitForm(forms.Form):
    """The label's main version: what a batch, an experiment and the resolve endpoint take, and one
    of the arms of its split."""

    # Not a ChoiceField: a number the select no longer offers must still reach the service, whose
    # message is the one to show (as VersionForm.model).
    version = forms.IntegerField(
        label="Main version",
        widget=forms.Select(attrs={"id": "split-main-version"}),
        help_text="What batches, experiments and the resolve endpoint take; it must be one of the arms.",
    )

    def __init__(self, *args: Any, version_choices: list[tuple[Any, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["version"].widget.choices = version_choices


class SplitArmForm(forms.Form):
    """One arm of a split; a row left blank is no arm."""

    version = forms.IntegerField(required=False, widget=forms.Select(attrs={"class": "split-arm-version"}))
    weight = forms.IntegerField(
        required=False,
        widget=forms.NumberInput(
            attrs={"class": "vIntegerField split-arm-weight", "min": 1, "max": SPLIT_TOTAL - 1, "step": 1}
        ),
    )

    def __init__(self, *args: Any, version_choices: list[tuple[Any, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["version"].widget.choices = version_choices

    def arm(self) -> dict[str, Any] | None:
        """The arm as label_split_set takes it (a half-filled row too: the service names what is
        missing), or None for a blank row."""
        version, weight = self.cleaned_data.get("version"), self.cleaned_data.get("weight")
        if version is None and weight is None:
            return None
        return {"version": version, "weight": weight}


SplitArmFormSet = formset_factory(SplitArmForm, extra=0)


class SplitEditor:
    """The split page's form and its MAX_SPLIT_ARMS arm rows, bound together: `split()` is what
    prompts.services.label_split_set takes, `add_service_error()` puts its refusal at the field it
    names (`split.1.weight` is the weight of the second arm sent, `split` the arms as a whole)."""

    def __init__(self, *, label: PromptLabel, versions: list[tuple[int, str]], data: Any = None):
        choices: list[tuple[Any, str]] = [
            (number, f"v{number}: {message[:50]}" if message else f"v{number}") for number, message in versions
        ]
        # The label's arms, else its version as the first; blank rows up to the most a split may have.
        arms = [dict(arm) for arm in label.split] or [{"version": label.version.number}]
        arms += [{} for _ in range(MAX_SPLIT_ARMS - len(arms))]
        self.form = LabelSplitForm(data, initial={"version": label.version.number}, version_choices=choices)
        self.arms = SplitArmFormSet(
            data, prefix="arms", initial=arms, form_kwargs={"version_choices": [("", "---------"), *choices]}
        )
        self.split_errors: list[str] = []
        # The rows sent to the service, in its indexing (blank rows left out).
        self._sent: list[SplitArmForm] = []

    def is_valid(self, *, clear: bool = False) -> bool:
        """Whether the fields parse; clearing the split ignores the arm rows."""
        if not self.form.is_valid():
            return False
        return clear or self.arms.is_valid()

    def version(self) -> int:
        return int(self.form.cleaned_data["version"])

    def split(self) -> list[dict[str, Any]]:
        self._sent = [form for form in self.arms.forms if form.arm() is not None]
        return [arm for form in self._sent if (arm := form.arm()) is not None]

    def add_service_error(self, exc: DomainError) -> None:
        """Shows the service's refusal at the fields it names, in its own words."""
        if not exc.fields:
            self.form.add_error(None, exc.message)
        for name, problems in exc.fields.items():
            head, _, rest = name.partition(".")
            index, _, part = rest.partition(".")
            if head == "split" and not rest:
                self.split_errors.extend(problems)
            elif head == "split" and index.isdigit() and int(index) < len(self._sent):
                self._sent[int(index)].add_error(part if part in ("version", "weight") else None, problems)
            elif head == "version" and not rest:
                self.form.add_error("version", problems)
            else:
                self.form.add_error(None, [f"{name}: {problem}" for problem in problems])

    @property
    def has_errors(self) -> bool:
        return bool(self.form.errors or self.split_errors) or (self.arms.is_bound and self.arms.total_error_count() > 0)
