"""Price lookup and seeding from genai-prices."""

from datetime import date
from decimal import Decimal

import pytest

from billing import selectors, services
from billing.models import ModelPrice

pytestmark = pytest.mark.django_db


def _price(**fields):
    values = {
        "provider": "p",
        "model": "m",
        "input_per_mtok": Decimal("1"),
        "output_per_mtok": Decimal("2"),
        "effective_from": date(2024, 1, 1),
        "source": ModelPrice.Source.SEED,
    }
    values.update(fields)
    return ModelPrice.objects.create(**values)


def test_no_price_is_none():
    assert selectors.price_for(provider="p", model="m", on=date(2025, 1, 1)) is None


def test_staff_beats_seed_and_exact_beats_glob_and_named_provider_beats_any():
    seed = _price()
    assert selectors.price_for(provider="p", model="m", on=date(2025, 1, 1)) == seed
    any_provider = _price(provider="", source=ModelPrice.Source.STAFF, effective_from=date(2023, 1, 1))
    glob = _price(model="m*", source=ModelPrice.Source.STAFF, effective_from=date(2023, 6, 1))
    exact = _price(source=ModelPrice.Source.STAFF, effective_from=date(2022, 1, 1))
    assert selectors.price_for(provider="p", model="m", on=date(2025, 1, 1)) == exact
    exact.delete()
    assert selectors.price_for(provider="p", model="m", on=date(2025, 1, 1)) == any_provider
    any_provider.delete()
    assert selectors.price_for(provider="p", model="m", on=date(2025, 1, 1)) == glob
    assert selectors.price_for(provider="p", model="mx", on=date(2025, 1, 1)) == glob
    assert selectors.price_for(provider="q", model="m", on=date(2025, 1, 1)) is None


def test_effective_from_picks_the_price_in_force():
    old = _price(effective_from=date(2024, 1, 1))
    new = _price(effective_from=date(2025, 1, 1), input_per_mtok=Decimal("5"))
    assert selectors.price_for(provider="p", model="m", on=date(2024, 6, 1)) == old
    assert selectors.price_for(provider="p", model="m", on=date(2025, 6, 1)) == new
    assert selectors.price_for(provider="p", model="m", on=date(2023, 6, 1)) is None


def test_seed_loads_real_prices_idempotently_and_sets_local_to_zero():
    first = services.prices_seed()
    count = ModelPrice.objects.count()
    second = services.prices_seed()

    assert first["created"] > 100
    assert second["created"] == 0
    assert ModelPrice.objects.count() == count
    gpt = ModelPrice.objects.filter(provider="openai", source=ModelPrice.Source.SEED).first()
    assert gpt is not None and gpt.input_per_mtok > 0
    local = selectors.price_for(provider="local", model="smollm2", on=date.today())
    assert local is not None
    assert (local.input_per_mtok, local.output_per_mtok, local.source) == (0, 0, ModelPrice.Source.DEFAULT)


def test_staff_price_overrides_local_default():
    services.prices_seed()
    staff = _price(provider="local", model="smollm2", source=ModelPrice.Source.STAFF, input_per_mtok=Decimal("0.01"))

    assert selectors.price_for(provider="local", model="smollm2", on=date.today()) == staff
