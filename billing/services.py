"""Writes for prices and the cost log. Runs are known only by id (no import of the runs app)."""

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import APIKey, User
from billing import selectors
from billing.models import CostLog, ModelPrice

MILLION = Decimal(1_000_000)
PRICE_QUANTUM = Decimal("0.000001")  # ModelPrice's decimal_places
LOCAL_PROVIDER = "local"


def cost_record(
    *,
    run_id: uuid.UUID,
    owner: User,
    api_key: APIKey | None,
    provider: str,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    tokens_estimated: bool,
) -> CostLog:
    """Charges one succeeded run. Precondition: called inside the transaction that marks it succeeded.

    A second call for the same run fails on the unique constraint, so a run is never charged twice.
    """
    price = selectors.price_for(provider=provider, model=model, on=timezone.now().date())
    fields: dict[str, Any] = {"cost_known": False, "currency": "USD"}
    if price is not None:
        input_cost = price.input_per_mtok * prompt_tokens / MILLION
        output_cost = price.output_per_mtok * completion_tokens / MILLION
        fields = {
            "price": price,
            "input_cost": input_cost,
            "output_cost": output_cost,
            "total_cost": input_cost + output_cost,
            "currency": price.currency,
            "cost_known": True,
        }
    return CostLog.objects.create(
        run_id=run_id,
        owner=owner,
        api_key=api_key,
        provider=provider,
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        tokens_estimated=tokens_estimated,
        **fields,
    )


def _flat_price(value: Any) -> Decimal | None:
    """A single per-MTok price from genai-prices' value (a Decimal, or tiers: take the base)."""
    if value is None:
        return None
    if not isinstance(value, Decimal):
        value = getattr(value, "base", None)
    # Rounded as stored, so an unchanged price compares equal on the next seed.
    return value.quantize(PRICE_QUANTUM) if isinstance(value, Decimal) else None


def _current_price(prices: Any, today: date) -> Any:
    """genai-prices gives one price or a list of conditional ones; the last one in force today."""
    if not isinstance(prices, list):
        return prices
    current = None
    for conditional in prices:
        constraint = getattr(conditional, "constraint", None)
        start = getattr(constraint, "start_date", None) if constraint is not None else None
        if start is None or (start.date() if hasattr(start, "date") else start) <= today:
            current = conditional.prices
    return current


@transaction.atomic
def prices_seed() -> dict[str, int]:
    """Loads token prices from the maintained `genai-prices` snapshot that ships with the package.

    Seeded rows never override staff rows (staff rows win at lookup). Idempotent: an unchanged price
    is not written again. Self-hosted models (`local/*`) get an explicit zero price by default.
    """
    from genai_prices.data_snapshot import get_snapshot

    today = timezone.now().date()
    created = unchanged = skipped = 0
    seen: set[tuple[str, str]] = set()
    for provider in get_snapshot().providers:
        for model in provider.models:
            if (provider.id, model.id) in seen:
                continue  # the snapshot lists a few ids twice; the first entry is the canonical one
            seen.add((provider.id, model.id))
            price = _current_price(model.prices, today)
            input_mtok = _flat_price(getattr(price, "input_mtok", None))
            output_mtok = _flat_price(getattr(price, "output_mtok", None))
            if input_mtok is None or output_mtok is None:
                skipped += 1  # e.g. image or audio models without token prices
                continue
            latest = (
                ModelPrice.objects.filter(provider=provider.id, model=model.id, source=ModelPrice.Source.SEED)
                .order_by("-effective_from")
                .first()
            )
            if latest and latest.input_per_mtok == input_mtok and latest.output_per_mtok == output_mtok:
                unchanged += 1
                continue
            ModelPrice.objects.update_or_create(
                provider=provider.id,
                model=model.id,
                effective_from=today if latest else date(2000, 1, 1),
                source=ModelPrice.Source.SEED,
                defaults={"input_per_mtok": input_mtok, "output_per_mtok": output_mtok, "currency": "USD"},
            )
            created += 1
    _, local_created = ModelPrice.objects.get_or_create(
        provider=LOCAL_PROVIDER,
        model="*",
        effective_from=date(2000, 1, 1),
        source=ModelPrice.Source.DEFAULT,
        defaults={
            "input_per_mtok": Decimal(0),
            "output_per_mtok": Decimal(0),
            "notes": "Self-hosted: costs what staff set; zero unless a staff price overrides it.",
        },
    )
    return {"created": created + int(local_created), "unchanged": unchanged, "skipped": skipped}
