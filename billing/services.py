"""Writes for prices, the cost log, budgets and the tokens-per-minute counter. Runs are known only
by id (no import of the runs app)."""

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, Decimal
from http import HTTPStatus
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import APIKey, Project, User
from billing import selectors
from billing.models import Budget, BudgetReservation, CostLog, ModelPrice
from llmops.errors import Conflict, DomainError, ValidationFailed

logger = logging.getLogger(__name__)

MILLION = Decimal(1_000_000)
PRICE_QUANTUM = Decimal("0.000001")  # ModelPrice's decimal_places
RESERVATION_QUANTUM = Decimal("0.0000000001")  # BudgetReservation.amount's decimal_places
LOCAL_PROVIDER = "local"


class BudgetRefused(DomainError):
    """A hard budget refuses a run: 402, because the request itself is valid and would be accepted
    with more budget left (`budget_exceeded`) or with a known price for its model (`price_unknown`)."""

    status_code = HTTPStatus.PAYMENT_REQUIRED
    code = "budget_exceeded"


def cost_record(
    *,
    run_id: uuid.UUID,
    project: Project,
    created_by: User | None = None,
    api_key: APIKey | None,
    provider: str,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    tokens_estimated: bool,
    prompt_version_id: uuid.UUID | None,
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
        project=project,
        created_by=created_by,
        api_key=api_key,
        provider=provider,
        model=model,
        prompt_version_id=prompt_version_id,
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


def _usd(value: Decimal) -> str:
    return f"{value.normalize():f} USD"


def _scope_name(budget: Budget) -> str:
    return f"key {budget.api_key.prefix}" if budget.api_key is not None else "project-wide"


def _per_window(budget: Budget) -> str:
    return "in total" if budget.window == Budget.Window.NONE else f"per {budget.window}"


@dataclass(frozen=True)
class ReserveCandidate:
    """A model a run may be answered by besides its own (a fallback), with its prompt's token bound
    (which depends on the model's tokenizer: providers.tokens.prompt_tokens_bound)."""

    provider: str
    model: str
    prompt_tokens_bound: int


def budget_reserve(
    *,
    project: Project,
    api_key: APIKey | None,
    run_id: uuid.UUID,
    provider: str,
    model: str,
    prompt_tokens_bound: int,
    max_completion_tokens: int,
    fallbacks: Sequence[ReserveCandidate] = (),
) -> list[BudgetReservation]:
    """Holds the run's maximum cost against every budget that applies, or refuses the run (402).

    The maximum is `prompt_tokens_bound` (a proven upper bound of the prompt's tokens, providers.tokens)
    at the input price plus `max_completion_tokens` (always sent to the provider) at the output price,
    so a run can never be charged more than it reserved, and the sum of charges never passes a budget.
    A run with `fallbacks` may be answered by any of its models, so it holds the most expensive one's
    maximum; a model with no known price refuses it (`price_unknown`), be it the run's own or a fallback.
    The one exception is a provider that ignores `max_tokens`: the run is charged what the provider
    reports (the overshoot is real spend), and the budget, then over its amount, refuses every
    further run until its window resets.

    Precondition: inside the transaction that creates the run, after its row is written, so a refusal
    rolls the run back and the hold commits together with the run.
    """
    if not selectors.budget_ids_applying(project=project, api_key=api_key):
        return []  # no budget applies: nothing to lock, nothing to hold
    with transaction.atomic():
        now = timezone.now()
        # Lock first, in primary key order (no deadlock between two runs counting against the same
        # budgets), then read the usage in a new statement: under READ COMMITTED that statement sees
        # every reservation committed by whoever held the lock before. One statement for spend and holds
        # also means a run settling meanwhile is seen either held or charged, never neither.
        locked = list(
            selectors.budgets_applying(project=project, api_key=api_key)
            .select_for_update()
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if not locked:
            return []
        candidates = [ReserveCandidate(provider, model, prompt_tokens_bound), *fallbacks]
        maximum = max(_maximum_cost(candidate, max_completion_tokens, on=now.date()) for candidate in candidates)
        of_candidates = f" (the most expensive of its {len(candidates)} models)" if len(candidates) > 1 else ""
        budgets = list(
            selectors.budgets_with_usage(now=now).filter(pk__in=locked).select_related("api_key").order_by("pk")
        )
        for budget in budgets:
            remaining = budget.amount - budget.spent - budget.reserved  # type: ignore[attr-defined]
            if maximum > remaining:
                raise BudgetRefused(
                    f"Budget exceeded: this run may cost up to {_usd(maximum)}{of_candidates}, more than the "
                    f"{_scope_name(budget)} budget {budget.pk} has left ({_usd(budget.amount)} {_per_window(budget)}: "
                    f"spent {_usd(budget.spent)}, reserved {_usd(budget.reserved)}, "  # type: ignore[attr-defined]
                    f"remaining {_usd(remaining)})."
                )
        return BudgetReservation.objects.bulk_create(
            [BudgetReservation(budget=budget, run_id=run_id, amount=maximum) for budget in budgets]
        )


def _maximum_cost(candidate: ReserveCandidate, max_completion_tokens: int, *, on: date) -> Decimal:
    """The most a run answered by `candidate` may cost; BudgetRefused when its price is unknown."""
    price = selectors.price_for(provider=candidate.provider, model=candidate.model, on=on)
    if price is None:
        raise BudgetRefused(
            f"No price is known for the model {candidate.provider}/{candidate.model}, and a budget applies: a "
            "hard budget cannot admit a run of unknown cost. Ask staff to set a price, or use a priced model.",
            code="price_unknown",
        )
    return (
        (price.input_per_mtok * candidate.prompt_tokens_bound + price.output_per_mtok * max_completion_tokens) / MILLION
    ).quantize(RESERVATION_QUANTUM, rounding=ROUND_CEILING)


def budget_settle(*, run_id: uuid.UUID) -> int:
    """Closes the run's held reservations as settled; returns how many.

    Precondition: inside the transaction that writes the run's CostLog, so the real cost replaces
    the hold in one commit (budget_reserve never sees both, nor neither).
    """
    return _reservations_close(run_id=run_id, status=BudgetReservation.Status.SETTLED)


def budget_release(*, run_id: uuid.UUID) -> int:
    """Frees the held reservations of a run that failed or was canceled; returns how many.

    Precondition: inside the transaction that finishes the run, so a run retried instead keeps its hold.
    """
    return _reservations_close(run_id=run_id, status=BudgetReservation.Status.RELEASED)


def _reservations_close(*, run_id: uuid.UUID, status: str) -> int:
    # Only held ones: settling or releasing twice (a redelivered message) changes nothing.
    now = timezone.now()
    return BudgetReservation.objects.filter(run_id=run_id, status=BudgetReservation.Status.HELD).update(
        status=status, closed_at=now, updated_at=now
    )


@transaction.atomic
def budget_create(*, project: Project, amount: Decimal, window: str, api_key_id: uuid.UUID | None = None) -> Budget:
    """Creates the project-wide budget, or one for one of the project's keys; one of each at most (409)."""
    api_key = None
    if api_key_id is not None:
        api_key = APIKey.objects.filter(pk=api_key_id, project=project).first()
        if api_key is None:
            raise ValidationFailed(
                "No such API key.", fields={"api_key": ["None of this project's API keys has this id."]}
            )
    duplicate = Conflict(
        f"A {'budget for this key' if api_key else 'project-wide budget'} exists already; change it instead.",
        code="budget_exists",
    )
    if Budget.objects.filter(project=project, api_key=api_key).exists():
        raise duplicate
    try:
        with transaction.atomic():
            return Budget.objects.create(project=project, api_key=api_key, amount=amount, window=window)
    except IntegrityError:
        raise duplicate from None  # a concurrent request created it first


@transaction.atomic
def budget_update(*, budget: Budget, amount: Decimal | None = None, window: str | None = None) -> Budget:
    """Changes the amount or window; takes the budget's lock so no reservation is checked halfway."""
    locked = Budget.objects.select_for_update().get(pk=budget.pk)
    if amount is not None:
        locked.amount = amount
    if window is not None:
        locked.window = window
    locked.save(update_fields=["amount", "window", "updated_at"])
    return locked


def budget_delete(*, budget: Budget) -> None:
    """Deletes the budget and its reservations; runs in flight are no longer limited by it."""
    budget.delete()
