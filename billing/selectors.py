"""Reads for prices, spend and budgets."""

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import (
    Case,
    CharField,
    Count,
    DateTimeField,
    DecimalField,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, Concat, TruncDate
from django.utils import timezone

from accounts.models import APIKey, Project
from billing import rollup
from billing.models import Budget, BudgetReservation, CostDay, CostLog, ModelPrice
from llmops.config_cache import ProcessCache
from llmops.errors import NotFound

MONEY = DecimalField(max_digits=18, decimal_places=10)
_SOURCE_RANK = {ModelPrice.Source.STAFF: 0, ModelPrice.Source.DEFAULT: 1, ModelPrice.Source.SEED: 2}


# Every run's hold and charge look up its model's price, and which budgets apply to its key: this
# process keeps the answers (llmops/config_cache.py; billing.signals invalidates them on any write).
price_answers: ProcessCache[ModelPrice | None] = ProcessCache("prices")
budgets_applying_ids: ProcessCache[tuple[uuid.UUID, ...]] = ProcessCache("budgets applying")


def price_for(*, provider: str, model: str, on: date) -> ModelPrice | None:
    """The price that applies to `provider/model` on a day, or None when nothing matches. The row is
    shared with other calls in this process: read it, do not change it."""
    return price_answers.fetch((provider, model, on), lambda: _price_for(provider=provider, model=model, on=on))


def _price_for(*, provider: str, model: str, on: date) -> ModelPrice | None:
    candidates = ModelPrice.objects.filter(Q(provider=provider) | Q(provider=""), effective_from__lte=on).filter(
        # Exact ids are matched in SQL; globs are few and matched here.
        Q(model=model) | Q(model__contains="*") | Q(model__contains="?") | Q(model__contains="[")
    )
    matching = [p for p in candidates if p.model == model or (p.is_glob and fnmatchcase(model, p.model))]
    if not matching:
        return None
    matching.sort(
        key=lambda p: (
            _SOURCE_RANK[ModelPrice.Source(p.source)],
            p.is_glob,
            p.provider == "",
            -p.effective_from.toordinal(),
        )
    )
    return matching[0]


def _version_label(version: str) -> Case:
    """`<prompt> v<number>` of the version at the path `version` (null for a run of a plain model)."""
    return Case(
        When(**{f"{version}__isnull": True}, then=Value(None)),
        default=Concat(
            F(f"{version}__prompt__name"),
            Value(" v"),
            Cast(F(f"{version}__number"), CharField()),
            output_field=CharField(),
        ),
        output_field=CharField(),
    )


GROUPINGS = {
    "day": TruncDate("created_at"),
    "model": F("model"),
    "provider": F("provider"),
    "prompt": F("prompt_version__prompt__name"),
    # The arms of an A/B split side by side.
    "version": _version_label("prompt_version"),
    "key": F("api_key__prefix"),
    # Who made the run (its creator's username; null when that user was deleted).
    "member": F("created_by__username"),
}
# The same groups over the daily rollup's rows (billing/rollup.py), which have the same columns but a day.
DAY_GROUPINGS = {**GROUPINGS, "day": F("day")}


def _cost_aggregates() -> dict[str, Any]:
    """Runs, tokens, the sum of known costs and the count of unknown-cost runs (never summed as zero)."""
    return {
        "runs": Count("id"),
        "prompt_tokens": Coalesce(Sum("prompt_tokens"), 0),
        "completion_tokens": Coalesce(Sum("completion_tokens"), 0),
        "cost": Coalesce(Sum("total_cost"), Value(Decimal(0)), output_field=MONEY),
        "unknown_cost_runs": Count("id", filter=Q(cost_known=False)),
    }


def _day_aggregates() -> dict[str, Any]:
    """_cost_aggregates over CostDay rows."""
    return {
        "runs": Coalesce(Sum("runs"), 0),
        "prompt_tokens": Coalesce(Sum("prompt_tokens"), 0),
        "completion_tokens": Coalesce(Sum("completion_tokens"), 0),
        "cost": Coalesce(Sum("cost"), Value(Decimal(0)), output_field=MONEY),
        "unknown_cost_runs": Coalesce(Sum("unknown_cost_runs"), 0),
    }


def cost_summary(*, project: Project, start: datetime | None, end: datetime | None, group_by: str) -> dict[str, Any]:
    """Spend of one project in [start, end), grouped; unknown-cost runs are counted apart.

    The whole days of the range that are final are read from the daily rollup (rolled up first if this
    is the first summary to need them: billing/rollup.py), the rest from the cost log: at most the
    partial days at the range's edges and the days not final yet.
    """
    logs = CostLog.objects.filter(project=project)
    # Nothing is older than the first entry: from the midnight before it at the earliest (its day is
    # then whole, so it can be read rolled up), and a `from` centuries back rolls up no empty days.
    first = logs.order_by("created_at").values_list("created_at", flat=True).first()
    earliest = rollup.midnight((first or timezone.now()).astimezone(UTC).date())
    start = earliest if start is None else max(start, earliest)
    whole_from = rollup.midnight(start.astimezone(UTC).date())
    if whole_from < start:
        whole_from += timedelta(days=1)
    final_until = rollup.midnight(rollup.last_final_day() + timedelta(days=1))
    whole_until = final_until if end is None else min(final_until, rollup.midnight(end.astimezone(UTC).date()))

    groups: dict[Any, dict[str, Any]] = {}
    # The cost log's ranges left to read: each its own index range scan (an OR of the two is not).
    ranges: list[tuple[datetime, datetime | None]] = [(start, end)]
    if whole_from < whole_until:
        rollup.rollup_ensure(project=project, first=whole_from.date(), last=whole_until.date() - timedelta(days=1))
        days = CostDay.objects.filter(project=project, day__gte=whole_from.date(), day__lt=whole_until.date())
        _merge(groups, days.annotate(group=DAY_GROUPINGS[group_by]).values("group").annotate(**_day_aggregates()))
        ranges = [(start, whole_from), (whole_until, end)]
    for low, high in ranges:
        if high is not None and high <= low:
            continue
        part = logs.filter(created_at__gte=low)
        if high is not None:
            part = part.filter(created_at__lt=high)
        _merge(
            groups, part.annotate(group=GROUPINGS[group_by]).values("group").annotate(**_cost_aggregates()).order_by()
        )

    rows = sorted(groups.values(), key=lambda row: (row["group"] is None, row["group"] or ""))
    # The totals are the groups' sums (every entry is in exactly one group).
    totals = {
        name: sum((row[name] for row in rows), Decimal(0) if name == "cost" else 0) for name in _cost_aggregates()
    }
    return {"group_by": group_by, "currency": "USD", "groups": rows, "total": totals}


def _merge(groups: dict[Any, dict[str, Any]], rows: Any) -> None:
    for row in rows:
        row = dict(row)
        if row["runs"] == 0:
            continue
        held = groups.get(row["group"])
        if held is None:
            groups[row["group"]] = row
        else:
            for name, value in row.items():
                if name != "group":
                    held[name] += value


def cost_logs_between(*, project: Project | None, start: datetime, end: datetime) -> QuerySet[CostLog]:
    """Cost entries made in [start, end): of one project, or of every project when `project` is None
    (staff tooling only, such as the admin's cost dashboard: no client ever reads across projects)."""
    logs = CostLog.objects.filter(created_at__gte=start, created_at__lt=end)
    return logs if project is None else logs.filter(project=project)


def cost_groups(*, logs: QuerySet[CostLog], group: dict[str, Any]) -> list[dict[str, Any]]:
    """`logs` grouped by the expressions of `group` (alias -> expression, e.g. GROUPINGS' or an F()),
    each group with the aggregates of cost_summary; the costliest first. One query, whatever the rows."""
    rows = logs.values(**group).annotate(**_cost_aggregates())
    # F() rather than names: the annotations' names are dynamic, beyond the type checker's plugin.
    return [dict(row) for row in rows.order_by(F("cost").desc(), F("runs").desc(), *group)]


def cost_total(*, logs: QuerySet[CostLog]) -> dict[str, Any]:
    """The aggregates of cost_summary over all of `logs`: one query."""
    return logs.aggregate(**_cost_aggregates())


def cost_log_list(*, project: Project) -> QuerySet[CostLog]:
    return CostLog.objects.filter(project=project).select_related("api_key").order_by("-created_at")


# The start of a window with no end: everything ever spent counts.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)


def budget_window(*, window: str, now: datetime) -> tuple[datetime | None, datetime | None]:
    """(start, end) of the current window in UTC; (None, None) for a budget without a window.

    Computed from the clock, so a window resets by itself with no job to run.
    """
    now = now.astimezone(UTC)
    if window == Budget.Window.DAY:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    if window == Budget.Window.MONTH:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return start, (start + timedelta(days=32)).replace(day=1)
    return None, None


def budgets_with_usage(*, now: datetime) -> QuerySet[Budget]:
    """Budgets annotated with `spent` (known costs in their current window, for their scope) and
    `reserved` (held reservations), each in a single SQL statement.

    Every held reservation counts, whenever it was made: its run's cost will land in the current
    window or a later one, never in an earlier one.
    """
    day_start, _ = budget_window(window=Budget.Window.DAY, now=now)
    month_start, _ = budget_window(window=Budget.Window.MONTH, now=now)
    window_start = Case(
        When(window=Budget.Window.DAY, then=Value(day_start, output_field=DateTimeField())),
        When(window=Budget.Window.MONTH, then=Value(month_start, output_field=DateTimeField())),
        default=Value(BEGINNING, output_field=DateTimeField()),
        output_field=DateTimeField(),
    )
    costs = CostLog.objects.filter(
        project=OuterRef("project"), cost_known=True, created_at__gte=OuterRef("usage_window_start")
    ).order_by()
    user_spent = costs.values("project").annotate(total=Sum("total_cost")).values("total")
    key_spent = (
        costs.filter(api_key=OuterRef("api_key")).values("project").annotate(total=Sum("total_cost")).values("total")
    )
    held = (
        BudgetReservation.objects.filter(budget=OuterRef("pk"), status=BudgetReservation.Status.HELD)
        .order_by()
        .values("budget")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    zero = Value(Decimal(0), output_field=MONEY)
    return Budget.objects.annotate(usage_window_start=window_start).annotate(
        spent=Case(
            When(api_key__isnull=True, then=Coalesce(Subquery(user_spent, output_field=MONEY), zero)),
            default=Coalesce(Subquery(key_spent, output_field=MONEY), zero),
            output_field=MONEY,
        ),
        reserved=Coalesce(Subquery(held, output_field=MONEY), zero, output_field=MONEY),
    )


def budgets_applying(*, project: Project, api_key: APIKey | None) -> QuerySet[Budget]:
    """The budgets a run of `project` through `api_key` counts against: the project-wide one and the key's."""
    scope = Q(api_key__isnull=True)
    if api_key is not None:
        scope |= Q(api_key=api_key)
    return Budget.objects.filter(scope, project=project)


def budget_ids_applying(*, project: Project, api_key: APIKey | None) -> tuple[uuid.UUID, ...]:
    """The primary keys of budgets_applying, in order; from this process's cache when it holds them.
    Most projects have no budget: then a run's hold reads nothing."""
    return budgets_applying_ids.fetch(
        (project.pk, api_key.pk if api_key is not None else None),
        lambda: tuple(budgets_applying(project=project, api_key=api_key).order_by("pk").values_list("pk", flat=True)),
    )


def budget_list(*, project: Project, now: datetime) -> QuerySet[Budget]:
    return budgets_with_usage(now=now).filter(project=project).select_related("api_key").order_by("created_at")


def budget_get(*, project: Project, budget_id: Any, now: datetime) -> Budget:
    """One of the project's budgets with its usage; anyone else's, or a malformed id, is NotFound."""
    try:
        return budget_list(project=project, now=now).get(pk=uuid.UUID(str(budget_id)))
    except (Budget.DoesNotExist, ValueError, ValidationError):
        raise NotFound("Budget not found.") from None
