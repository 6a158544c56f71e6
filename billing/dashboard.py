"""The admin's cost dashboard: spend and tokens per day, and tables by model, prompt, project, member
and key, for a range of days (UTC) and one project or all of them.

Staff tooling: it reads across projects with no membership check, so only the admin uses it. Every
figure comes from one aggregate query per table (billing.selectors), whatever the number of entries.
Runs whose model has no known price are counted apart in every row, never summed as zero.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import F, QuerySet
from django.utils.safestring import SafeString

from accounts.models import Project
from accounts.selectors import project_by_ref
from billing import selectors
from billing.chart import Bar, bar_chart
from billing.models import CostLog
from billing.selectors import GROUPINGS
from llmops.errors import ValidationFailed
from llmops.money import money_str

DEFAULT_DAYS = 30
MAX_DAYS = 366
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True)
class DashboardQuery:
    """Days [start, end) in UTC, and the project (None: every project)."""

    start: date
    end: date
    project: Project | None

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)


def _date_param(params: Mapping[str, str], name: str, problems: dict[str, list[str]]) -> date | None:
    raw = params.get(name, "").strip()
    if not raw:
        return None
    shown = raw[:40]
    if not _ISO_DATE.fullmatch(raw):
        problems[name] = [f"{shown!r} is not a date: use YYYY-MM-DD."]
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        problems[name] = [f"{shown!r} is not a date of the calendar."]
        return None


def dashboard_query(*, params: Mapping[str, str], today: date) -> DashboardQuery:
    """The range and project that `?start=&end=&project=` ask for; ValidationFailed names each bad field.

    `start` and `end` are days (YYYY-MM-DD, UTC), both included; by default the 30 days up to
    `today`. At most MAX_DAYS days. `project` is a slug or an id; empty means every project.
    """
    problems: dict[str, list[str]] = {}
    end = _date_param(params, "end", problems)
    start = _date_param(params, "start", problems)
    if end is None and "end" not in problems:
        end = today
    if start is None and "start" not in problems:
        # (Clamped at the calendar's first day rather than overflowing.)
        start = date.fromordinal(max(1, (end or today).toordinal() - (DEFAULT_DAYS - 1)))
    if start is not None and end is not None:
        if end >= date.max:
            problems["end"] = ["Choose an earlier day."]
        elif end < start:
            problems["end"] = ["The end is before the start."]
        elif (end - start).days + 1 > MAX_DAYS:
            problems["end"] = [f"At most {MAX_DAYS} days at a time."]
    project = None
    ref = params.get("project", "").strip()
    if ref and (len(ref) > 100 or not ref.isprintable()):
        # Never sent to the database: PostgreSQL refuses a NUL in a query (a 500, not a 400).
        problems["project"] = ["Not a project slug or id."]
    elif ref:
        project = project_by_ref(ref)
        if project is None:
            problems["project"] = [f"No project has the slug or id {ref[:60]!r}."]
    if problems or start is None or end is None:
        message = " ".join(f"{name}: {' '.join(texts)}" for name, texts in problems.items())
        raise ValidationFailed(message, fields=problems)
    return DashboardQuery(start=start, end=end + timedelta(days=1), project=project)


def project_choices() -> QuerySet[Project]:
    """Every project, for the dashboard's picker (staff see them all)."""
    return Project.objects.order_by("slug").only("id", "slug", "name")


@dataclass(frozen=True)
class Figures:
    runs: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal  # the sum of the known costs, USD
    unknown_cost_runs: int  # runs not in `cost`: their model had no price

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> "Figures":
        return cls(
            runs=row["runs"],
            prompt_tokens=row["prompt_tokens"],
            completion_tokens=row["completion_tokens"],
            cost=row["cost"],
            unknown_cost_runs=row["unknown_cost_runs"],
        )

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost_text(self) -> str:
        return money_str(self.cost)


ZERO = Figures(runs=0, prompt_tokens=0, completion_tokens=0, cost=Decimal(0), unknown_cost_runs=0)


@dataclass(frozen=True)
class Row:
    cells: list[str]  # the group's name, in the table's columns
    figures: Figures

    @property
    def label(self) -> str:
        return self.cells[0]


@dataclass(frozen=True)
class Table:
    id: str
    title: str
    columns: list[str]
    rows: list[Row]


@dataclass(frozen=True)
class Day:
    day: date
    figures: Figures


@dataclass(frozen=True)
class Dashboard:
    query: DashboardQuery
    days: list[Day]  # every day of the range, in order, zero where nothing was spent
    tables: list[Table]
    total: Figures


@dataclass(frozen=True)
class _Grouping:
    id: str
    title: str
    columns: list[str]
    group: dict[str, Any]  # alias -> expression, for selectors.cost_groups
    cells: Callable[[Mapping[str, Any]], list[str]]


def _key_cells(row: Mapping[str, Any]) -> list[str]:
    if row["key_id"] is None:  # made without a key (the admin, a command) or with a key since deleted
        return ["(no key)", "", ""]
    return [row["key_prefix"], row["key_name"], row["key_project"]]


_TABLES = [
    _Grouping(
        id="by-model",
        title="By model",
        columns=["Model"],
        group={"model_provider": GROUPINGS["provider"], "model_name": GROUPINGS["model"]},
        cells=lambda row: [f"{row['model_provider']}/{row['model_name']}"],
    ),
    _Grouping(
        id="by-prompt",
        title="By prompt",
        columns=["Prompt", "Project"],
        # Prompt names repeat across projects: grouped by the prompt itself.
        group={
            "prompt_id": F("run__prompt_version__prompt_id"),
            "prompt_name": GROUPINGS["prompt"],
            "prompt_project": F("project__slug"),
        },
        cells=lambda row: [row["prompt_name"], row["prompt_project"]],
    ),
    _Grouping(
        id="by-project",
        title="By project",
        columns=["Project", "Name"],
        group={"project_slug": F("project__slug"), "project_name": F("project__name")},
        cells=lambda row: [row["project_slug"], row["project_name"]],
    ),
    _Grouping(
        id="by-member",
        title="By member",
        columns=["Member"],
        group={"member_id": F("created_by_id"), "member_name": GROUPINGS["member"]},
        cells=lambda row: [row["member_name"] if row["member_id"] is not None else "(deleted user)"],
    ),
    _Grouping(
        id="by-key",
        title="By key",
        columns=["Key", "Name", "Project"],
        group={
            "key_id": F("api_key_id"),
            "key_prefix": GROUPINGS["key"],
            "key_name": F("api_key__name"),
            "key_project": F("api_key__project__slug"),
        },
        cells=_key_cells,
    ),
]


def _days(logs: QuerySet[CostLog], query: DashboardQuery) -> list[Day]:
    spent = {row["day"]: Figures.of(row) for row in selectors.cost_groups(logs=logs, group={"day": GROUPINGS["day"]})}
    count = (query.end - query.start).days
    days = [query.start + timedelta(days=offset) for offset in range(count)]
    return [Day(day=day, figures=spent.get(day, ZERO)) for day in days]


def cost_dashboard(*, query: DashboardQuery) -> Dashboard:
    """The dashboard's figures: a fixed number of queries (one per table, the days and the total)."""
    logs = selectors.cost_logs_between(
        project=query.project,
        start=datetime.combine(query.start, time.min, tzinfo=UTC),
        end=datetime.combine(query.end, time.min, tzinfo=UTC),
    )
    tables = [
        Table(
            id=grouping.id,
            title=grouping.title,
            columns=grouping.columns,
            rows=[
                Row(cells=grouping.cells(row), figures=Figures.of(row))
                for row in selectors.cost_groups(logs=logs, group=grouping.group)
            ],
        )
        for grouping in _TABLES
    ]
    return Dashboard(
        query=query,
        days=_days(logs, query),
        tables=tables,
        total=Figures.of(selectors.cost_total(logs=logs)),
    )


def _day_data(day: Day) -> dict[str, str]:
    figures = day.figures
    return {
        "day": day.day.isoformat(),
        "cost": figures.cost_text,
        "tokens": str(figures.tokens),
        "prompt-tokens": str(figures.prompt_tokens),
        "completion-tokens": str(figures.completion_tokens),
        "runs": str(figures.runs),
        "unknown-cost-runs": str(figures.unknown_cost_runs),
    }


def _runs_text(figures: Figures) -> str:
    text = f"{figures.runs} run{'' if figures.runs == 1 else 's'}"
    if figures.unknown_cost_runs:
        text += f", {figures.unknown_cost_runs} of unknown cost (not in the sum)"
    return text


def dashboard_charts(dashboard: Dashboard) -> tuple[SafeString, SafeString]:
    """The spend and the tokens per day, as SVG (ids chart-spend and chart-tokens)."""
    days = dashboard.days
    spend = bar_chart(
        element_id="chart-spend",
        title="Spend per day (USD)",
        bars=[
            Bar(
                label=day.day.isoformat(),
                value=day.figures.cost,
                tooltip=f"{day.day.isoformat()}: {day.figures.cost_text} USD, {_runs_text(day.figures)}",
                data=_day_data(day),
            )
            for day in days
        ],
        x_label="Day (UTC)",
        y_label="USD",
        tick_text=money_str,
    )
    tokens = bar_chart(
        element_id="chart-tokens",
        title="Tokens per day",
        bars=[
            Bar(
                label=day.day.isoformat(),
                value=day.figures.tokens,
                tooltip=(
                    f"{day.day.isoformat()}: {day.figures.tokens} tokens ({day.figures.prompt_tokens} prompt,"
                    f" {day.figures.completion_tokens} completion), {_runs_text(day.figures)}"
                ),
                data=_day_data(day),
            )
            for day in days
        ],
        x_label="Day (UTC)",
        y_label="Tokens",
        tick_text=lambda tick: str(int(tick)),
        integer=True,
    )
    return spend, tokens
