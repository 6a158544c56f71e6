"""The daily rollup of the cost log: whole past days of one project summed once, read by spend summaries.

A summary over 90 days used to scan every cost entry of the range (a million runs: 150-625 ms,
bench/cost_summary.py). Cost entries are appended with `created_at` = now and never change, so a
UTC day is final once it has passed, plus GRACE for the transactions still committing its last
entries. The first summary that needs a final day rolls it up (`rollup_ensure`): one grouped scan of
that day's entries into CostDay rows, per provider, model, prompt version, key and member, and a
CostRollup marker. Later summaries read those few rows for the whole days of their range and the
cost log itself only for the partial days at its edges and for the days not final yet (today).

Two requests racing to roll the same days both insert the markers first; the unique constraint lets
one through and the other (waiting on PostgreSQL for the first to commit) finds the days rolled.
"""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count, DecimalField, Q, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from accounts.models import Project
from billing.models import CostDay, CostLog, CostRollup

# How long after midnight a day's last entries may still be committing.
GRACE = timedelta(minutes=5)
MONEY = DecimalField(max_digits=18, decimal_places=10)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def last_final_day(now: datetime | None = None) -> date:
    """The latest UTC day no entry can be added to any more."""
    return ((now or timezone.now()) - GRACE).astimezone(UTC).date() - timedelta(days=1)


def rollup_ensure(*, project: Project, first: date, last: date) -> None:
    """Rolls up the project's days in [first, last] not rolled yet. Precondition: last <= last_final_day()."""
    if first > last:
        return
    with transaction.atomic():
        rolled = set(
            CostRollup.objects.filter(project=project, day__gte=first, day__lte=last).values_list("day", flat=True)
        )
        missing = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        missing = [day for day in missing if day not in rolled]
        if not missing:
            return
        try:
            with transaction.atomic():
                CostRollup.objects.bulk_create([CostRollup(project=project, day=day) for day in missing])
        except IntegrityError:
            return  # another request rolled them (committed) while this one looked
        wanted = set(missing)
        rows = (
            CostLog.objects.filter(
                project=project,
                created_at__gte=midnight(missing[0]),
                created_at__lt=midnight(missing[-1] + timedelta(1)),
            )
            .annotate(day=TruncDate("created_at"))
            .values("day", "provider", "model", "prompt_version_id", "api_key_id", "created_by_id")
            .annotate(
                runs=Count("id"),
                prompt_tokens_sum=Coalesce(Sum("prompt_tokens"), 0),
                completion_tokens_sum=Coalesce(Sum("completion_tokens"), 0),
                cost=Coalesce(Sum("total_cost"), Value(0), output_field=MONEY),
                unknown_cost_runs=Count("id", filter=Q(cost_known=False)),
            )
            .order_by()
        )
        CostDay.objects.bulk_create(
            [_day_row(project, dict(row)) for row in rows if row["day"] in wanted],
            batch_size=1000,
        )


def _day_row(project: Project, row: dict[str, Any]) -> CostDay:
    return CostDay(
        project=project,
        day=row["day"],
        provider=row["provider"],
        model=row["model"],
        prompt_version_id=row["prompt_version_id"],
        api_key_id=row["api_key_id"],
        created_by_id=row["created_by_id"],
        runs=row["runs"],
        prompt_tokens=row["prompt_tokens_sum"],
        completion_tokens=row["completion_tokens_sum"],
        cost=row["cost"],
        unknown_cost_runs=row["unknown_cost_runs"],
    )
