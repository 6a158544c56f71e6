"""List filters of the runs changelist that a plain field filter cannot express.

Each filter's choices cost one query whatever the number of runs; project and prompt choices are
capped (the selected one always stays listed), and a selected project narrows the prompt choices
to its own, so a project with many prompts lists them all.
"""

import uuid
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest

from accounts.models import Project
from prompts.models import Prompt
from runs.models import Batch, Run

# Most projects or prompts listed as choices; others are reached by search or by their link.
CHOICES_MAX = 100


def _uuid_or_none(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _uuid_value(value: str) -> uuid.UUID:
    parsed = _uuid_or_none(value)
    if parsed is None:
        raise IncorrectLookupParameters(f"Not an id: {value[:40]!r}.")
    return parsed


class ProjectFilter(admin.SimpleListFilter):
    """Projects that have runs (an EXISTS per project over the run_project_created_idx index)."""

    title = "project"
    parameter_name = "project"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        with_runs = Project.objects.filter(Exists(Run.objects.filter(project=OuterRef("pk")))).order_by("slug")
        choices = [(str(pk), slug) for pk, slug in with_runs.values_list("pk", "slug")[:CHOICES_MAX]]
        selected = _uuid_or_none(self.value())
        if selected is not None and str(selected) not in dict(choices):
            choices += [(str(pk), slug) for pk, slug in Project.objects.filter(pk=selected).values_list("pk", "slug")]
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Run]) -> QuerySet[Run]:
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(project_id=_uuid_value(value))


class PromptFilter(admin.SimpleListFilter):
    """The prompt of the run's version; with a project selected, that project's prompts only."""

    title = "prompt"
    parameter_name = "prompt"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        prompts = Prompt.objects.filter(Exists(Run.objects.filter(prompt_version__prompt=OuterRef("pk"))))
        project = _uuid_or_none(request.GET.get(ProjectFilter.parameter_name))
        if project is not None:
            prompts = prompts.filter(project_id=project)
        selected = _uuid_or_none(self.value())
        rows = list(prompts.order_by("project__slug", "name").values_list("pk", "name", "project__slug")[:CHOICES_MAX])
        if selected is not None and selected not in {pk for pk, _, _ in rows}:
            rows += Prompt.objects.filter(pk=selected).values_list("pk", "name", "project__slug")
        # Names repeat across projects: without a project selected, the label says whose.
        return [(str(pk), name if project is not None else f"{slug} / {name}") for pk, name, slug in rows]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Run]) -> QuerySet[Run]:
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(prompt_version__prompt_id=_uuid_value(value))


class BatchFilter(admin.SimpleListFilter):
    """In a batch or not (through BatchItem.run), or one batch by id: `?batch=<id>`."""

    title = "batch"
    parameter_name = "batch"
    IN_BATCH, NOT_IN_BATCH = "yes", "no"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        choices = [(self.IN_BATCH, "In a batch"), (self.NOT_IN_BATCH, "Not in a batch")]
        selected = _uuid_or_none(self.value())
        if selected is not None:
            batch = Batch.objects.filter(pk=selected).only("pk", "name", "status").first()
            if batch is not None:
                choices.append((str(batch.pk), str(batch)))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Run]) -> QuerySet[Run]:
        value = self.value()
        if value is None:
            return queryset
        if value == self.IN_BATCH:
            return queryset.filter(batch_item__isnull=False)
        if value == self.NOT_IN_BATCH:
            return queryset.filter(batch_item__isnull=True)
        return queryset.filter(batch_item__batch_id=_uuid_value(value))


class UnpricedFilter(admin.SimpleListFilter):
    """Runs whose cost is unknown: charged without a price (CostLog.cost_known false), or succeeded
    with no cost entry at all. Priced: a known cost."""

    title = "cost"
    parameter_name = "unpriced"
    UNPRICED, PRICED = "yes", "no"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(self.UNPRICED, "Unpriced"), (self.PRICED, "Priced")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Run]) -> QuerySet[Run]:
        value = self.value()
        if value == self.UNPRICED:
            return queryset.filter(
                Q(cost_log__cost_known=False) | Q(status=Run.Status.SUCCEEDED, cost_log__isnull=True)
            )
        if value == self.PRICED:
            return queryset.filter(cost_log__cost_known=True)
        if value is not None:
            raise IncorrectLookupParameters(f"unpriced is {self.UNPRICED} or {self.PRICED}.")
        return queryset
