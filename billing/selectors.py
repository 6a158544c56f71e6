"""Reads for prices and spend."""

from datetime import date, datetime
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any

from django.db.models import Count, DecimalField, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncDate

from accounts.models import User
from billing.models import CostLog, ModelPrice

_SOURCE_RANK = {ModelPrice.Source.STAFF: 0, ModelPrice.Source.DEFAULT: 1, ModelPrice.Source.SEED: 2}


def price_for(*, provider: str, model: str, on: date) -> ModelPrice | None:
    """The price that applies to `provider/model` on a day, or None when nothing matches."""
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


GROUPINGS = {
    "day": TruncDate("created_at"),
    "model": F("model"),
    "provider": F("provider"),
    "prompt": F("run__prompt_version__prompt__name"),
    "key": F("api_key__prefix"),
}


def cost_summary(*, owner: User, start: datetime | None, end: datetime | None, group_by: str) -> dict[str, Any]:
    """Spend of one owner in [start, end), grouped; unknown-cost runs are counted apart."""
    logs = CostLog.objects.filter(owner=owner)
    if start is not None:
        logs = logs.filter(created_at__gte=start)
    if end is not None:
        logs = logs.filter(created_at__lt=end)
    money = DecimalField(max_digits=18, decimal_places=10)
    aggregates = {
        "runs": Count("id"),
        "prompt_tokens": Coalesce(Sum("prompt_tokens"), 0),
        "completion_tokens": Coalesce(Sum("completion_tokens"), 0),
        "cost": Coalesce(Sum("total_cost"), Value(Decimal(0)), output_field=money),
        "unknown_cost_runs": Count("id", filter=Q(cost_known=False)),
    }
    rows = logs.annotate(group=GROUPINGS[group_by]).values("group").annotate(**aggregates).order_by("group")
    totals = logs.aggregate(**aggregates)
    return {"group_by": group_by, "currency": "USD", "groups": list(rows), "total": totals}


def cost_log_list(*, owner: User) -> QuerySet[CostLog]:
    return CostLog.objects.filter(owner=owner).select_related("api_key").order_by("-created_at")
