"""llmops.money.money_str, and the admin pages that show money with it."""

import re
from decimal import Decimal

import pytest

from billing.tests.factories import BudgetFactory, BudgetReservationFactory, CostLogFactory
from llmops.money import money_str
from runs.tests.factories import BatchFactory


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        ("0.0000000000", "0.00"),
        ("0E-10", "0.00"),  # what a database sum of no rows can come back as
        ("-0E-10", "0.00"),
        ("1.5000000000", "1.50"),
        ("0.0001230000", "0.000123"),
        ("0.0000000001", "0.0000000001"),  # trimmed, never rounded away
        ("12", "12.00"),
        ("1E+2", "100.00"),
        ("-0.5", "-0.50"),
        ("123456789.1234567890", "123456789.123456789"),
    ],
)
def test_money_str(amount, shown):
    assert money_str(Decimal(amount)) == shown


@pytest.mark.parametrize("amount", ["NaN", "Infinity"])
def test_money_str_refuses_what_is_not_an_amount(amount):
    with pytest.raises(ValueError):
        money_str(Decimal(amount))


# The admin shows the columns' stored precision (10 decimal places) as money.
TEN_PLACES = re.compile(r"\d\.\d{10}\b")


@pytest.mark.django_db
def test_cost_log_admin_shows_costs_as_money(admin_client):
    log = CostLogFactory(input_cost=Decimal("0"), output_cost=Decimal("1.5"), total_cost=Decimal("1.5"))

    changelist = admin_client.get("/admin/billing/costlog/").content.decode()
    page = admin_client.get(f"/admin/billing/costlog/{log.pk}/change/").content.decode()

    assert '<td class="field-total">1.50</td>' in changelist
    for label, shown in (("Input cost", "0.00"), ("Output cost", "1.50"), ("Total cost", "1.50")):
        assert re.search(rf"<label>{label}:</label>\s*<div class=\"readonly\">{re.escape(shown)}</div>", page), label
    assert not TEN_PLACES.search(changelist)
    assert not TEN_PLACES.search(page)  # the fields, and the title (the model's __str__)
    assert f"{log.model}: 1.50 USD" in page


@pytest.mark.django_db
def test_budget_and_reservation_admin_show_amounts_as_money(admin_client):
    reservation = BudgetReservationFactory(amount=Decimal("0.000123"), budget=BudgetFactory(amount=Decimal("10")))

    budgets = admin_client.get("/admin/billing/budget/").content.decode()
    reservations = admin_client.get("/admin/billing/budgetreservation/").content.decode()

    assert '<td class="field-amount_usd">10.00</td>' in budgets
    assert '<td class="field-reserved">0.000123</td>' in budgets
    assert '<td class="field-remaining">9.999877</td>' in budgets
    assert '<td class="field-amount_usd">0.000123</td>' in reservations
    assert reservation.budget.pk  # the row the pages show
    assert not TEN_PLACES.search(reservations)
    for page in ("budget", "budgetreservation"):
        obj = reservation.budget if page == "budget" else reservation
        change = admin_client.get(f"/admin/billing/{page}/{obj.pk}/change/").content.decode()
        assert not TEN_PLACES.search(change), page
    assert str(reservation.budget).startswith("10.00 USD per ")
    assert str(reservation).startswith("0.000123 USD ")


@pytest.mark.django_db
def test_batch_admin_shows_a_batch_without_cost_as_zero_dollars(admin_client):
    BatchFactory()

    changelist = admin_client.get("/admin/runs/batch/").content.decode()

    assert '<td class="field-total_cost">0.00</td>' in changelist
    assert "0E-10" not in changelist
