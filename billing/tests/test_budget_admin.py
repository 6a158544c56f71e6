"""The budget admin writes through billing.services: creation by budget_create, changes by budget_update
(the budget's lock, amount and window only), deletion by budget_delete."""

from decimal import Decimal
from typing import Any

import pytest

from accounts import services as account_services
from billing import admin as billing_admin
from billing import selectors
from billing.models import Budget, BudgetReservation
from billing.tests.factories import BudgetFactory, BudgetReservationFactory

pytestmark = pytest.mark.django_db

URL = "/admin/billing/budget/"


@pytest.fixture
def service_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the billing services the admin called (each still does its work)."""
    calls: list[str] = []
    for name in ("budget_create", "budget_update", "budget_delete"):
        real = getattr(billing_admin.services, name)

        def recording(*, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(**kwargs)

        monkeypatch.setattr(billing_admin.services, name, recording)
    return calls


def test_add_creates_through_the_service(admin_client, alice, service_calls):
    key = account_services.api_key_create(project=alice.personal_project, created_by=alice, name="ci")[0]

    user_wide = admin_client.post(
        f"{URL}add/", {"project": str(alice.personal_project.pk), "amount": "5", "window": "day"}
    )
    per_key = admin_client.post(
        f"{URL}add/",
        {"project": str(alice.personal_project.pk), "api_key": str(key.pk), "amount": "1.5", "window": "none"},
    )

    assert user_wide.status_code == per_key.status_code == 302
    assert service_calls == ["budget_create", "budget_create"]
    budgets = {b.api_key_id: (b.amount, b.window) for b in Budget.objects.filter(project=alice.personal_project)}
    assert budgets == {None: (Decimal("5"), "day"), key.pk: (Decimal("1.5"), "none")}


def test_a_second_user_wide_budget_is_refused_in_the_form(admin_client, alice, service_calls):
    BudgetFactory(owner=alice)

    response = admin_client.post(
        f"{URL}add/", {"project": str(alice.personal_project.pk), "amount": "5", "window": "day"}
    )

    assert response.status_code == 200  # the form again, with the error
    assert Budget.objects.filter(project=alice.personal_project).count() == 1
    assert service_calls == []


def test_change_updates_amount_and_window_through_the_service_and_keeps_the_scope(
    admin_client, alice, bob, service_calls
):
    budget = BudgetFactory(owner=alice, amount=Decimal("10"), window="month")
    held = BudgetReservationFactory(budget=budget, amount=Decimal("0.5"))
    bobs_key = account_services.api_key_create(project=bob.personal_project, created_by=bob, name="bob's")[0]

    response = admin_client.post(
        f"{URL}{budget.pk}/change/",
        # A tampered form tries to move the budget, and its held reservation, to bob.
        {"project": str(bob.personal_project.pk), "api_key": str(bobs_key.pk), "amount": "2", "window": "day"},
    )

    assert response.status_code == 302, response.content.decode()
    assert service_calls == ["budget_update"]
    budget.refresh_from_db()
    assert (budget.project_id, budget.api_key_id, budget.amount, budget.window) == (
        alice.personal_project.pk,
        None,
        Decimal("2"),
        "day",
    )
    assert BudgetReservation.objects.get(pk=held.pk).budget_id == budget.pk
    usage = selectors.budgets_with_usage(now=budget.updated_at).get(pk=budget.pk)
    assert usage.reserved == Decimal("0.5")  # still counted against alice's budget
    assert not Budget.objects.filter(project=bob.personal_project).exists()


def test_change_page_shows_the_scope_read_only(admin_client, alice):
    budget = BudgetFactory(owner=alice)

    form = admin_client.get(f"{URL}{budget.pk}/change/").context["adminform"].form

    assert set(form.fields) == {"amount", "window"}


def test_delete_goes_through_the_service(admin_client, alice, service_calls):
    budget = BudgetFactory(owner=alice)

    response = admin_client.post(f"{URL}{budget.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert service_calls == ["budget_delete"]
    assert not Budget.objects.exists()
