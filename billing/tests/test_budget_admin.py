"""The budget admin writes through billing.services: creation by budget_create, changes by budget_update
(the budget's lock, amount and window only), deletion by budget_delete. A second budget of the same
scope is refused at its field, a service's refusal is shown on the page (never a 500), and staff who
are not superusers need the admin role in the budget's project, as the API does."""

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from accounts import project_services
from accounts import services as account_services
from accounts.models import Role
from accounts.tests.factories import UserFactory
from billing import admin as billing_admin
from billing import selectors
from billing.models import Budget, BudgetReservation
from billing.tests.factories import BudgetFactory, BudgetReservationFactory
from llmops.errors import Conflict, DomainError, ValidationFailed

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


def test_a_second_project_wide_budget_is_refused_at_the_project_field(admin_client, alice, service_calls):
    BudgetFactory(owner=alice, amount=Decimal("10"), window="month")

    response = admin_client.post(
        f"{URL}add/", {"project": str(alice.personal_project.pk), "amount": "5", "window": "day"}
    )

    assert response.status_code == 200  # the form again, with the error
    form = response.context["adminform"].form
    assert form.errors == {
        "project": [
            "This project already has a project-wide budget (10.00 USD per month); edit that one, "
            "or choose an API key to give one key a budget of its own."
        ]
    }
    assert "is violated" not in response.content.decode()
    assert Budget.objects.filter(project=alice.personal_project).count() == 1
    assert service_calls == []


def test_a_second_budget_for_a_key_is_refused_at_the_key_field(admin_client, alice, service_calls):
    key = account_services.api_key_create(project=alice.personal_project, created_by=alice, name="ci")[0]
    BudgetFactory(owner=alice, api_key=key, amount=Decimal("1.5"), window="day")

    response = admin_client.post(
        f"{URL}add/",
        {"project": str(alice.personal_project.pk), "api_key": str(key.pk), "amount": "5", "window": "month"},
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "api_key": ["This key already has a budget (1.50 USD per day); edit that one."]
    }
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


# --- a service's refusal is shown on the page, never a 500 ------------------------------------------------


@pytest.fixture
def refusing(monkeypatch: pytest.MonkeyPatch):
    """Makes one billing service refuse with `error` (and do nothing)."""

    def refuse(name: str, error: DomainError) -> None:
        def refused(**kwargs: Any) -> Any:
            raise error

        monkeypatch.setattr(billing_admin.services, name, refused)

    return refuse


def test_a_refusal_naming_a_field_is_shown_at_that_field(admin_client, alice, refusing):
    refusing("budget_create", ValidationFailed("Too much.", fields={"amount": ["At most 1000 USD."]}))

    response = admin_client.post(
        f"{URL}add/", {"project": str(alice.personal_project.pk), "amount": "5000", "window": "day"}
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"amount": ["amount: At most 1000 USD."]}
    assert not Budget.objects.exists()


def test_a_refusal_of_the_whole_budget_is_shown_above_the_form(admin_client, alice, refusing):
    # What budget_create raises when a concurrent request made the project-wide budget first.
    refusing("budget_create", Conflict("A project-wide budget exists already; change it instead."))

    response = admin_client.post(
        f"{URL}add/", {"project": str(alice.personal_project.pk), "amount": "5", "window": "day"}
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        "A project-wide budget exists already; change it instead."
    ]
    assert not Budget.objects.exists()


def test_a_refused_change_keeps_the_budget_and_shows_why(admin_client, alice, refusing):
    budget = BudgetFactory(owner=alice, amount=Decimal("10"), window="month")
    refusing("budget_update", ValidationFailed("No.", fields={"window": ["Not now."]}))

    response = admin_client.post(f"{URL}{budget.pk}/change/", {"amount": "2", "window": "day"})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"window": ["window: Not now."]}
    budget.refresh_from_db()
    assert (budget.amount, budget.window) == (Decimal("10"), "month")


def test_a_refused_delete_is_a_message_on_the_budgets_page(admin_client, alice, refusing):
    budget = BudgetFactory(owner=alice)
    refusing("budget_delete", Conflict("Runs are in flight."))

    response = admin_client.post(f"{URL}{budget.pk}/delete/", {"post": "yes"}, follow=True)

    assert response.redirect_chain == [(f"{URL}{budget.pk}/change/", 302)]
    assert [str(message) for message in response.context["messages"]] == ["Runs are in flight."]
    assert Budget.objects.filter(pk=budget.pk).exists()


def test_the_bulk_delete_is_not_offered(admin_client, alice):
    # It would delete the rows directly, around budget_delete and the role check.
    budget = BudgetFactory(owner=alice)

    response = admin_client.post(
        URL, {"action": "delete_selected", "_selected_action": [str(budget.pk)], "post": "yes"}
    )

    assert response.status_code == 200  # the changelist, with no action to run
    assert Budget.objects.filter(pk=budget.pk).exists()


# --- staff who are not superusers need the admin role in the budget's project ---------------------------


@pytest.fixture
def team(alice):
    return project_services.project_create(name="Research", created_by=alice)


@pytest.fixture
def dave(team):
    """A staff user who is not a superuser, with every budget permission, and an editor of the team."""
    user = UserFactory(username="dave", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="billing",
            codename__in=["view_budget", "add_budget", "change_budget", "delete_budget"],
        )
    )
    project_services.member_add(project=team, user=user, role=Role.EDITOR, acting_role=None)
    return user


@pytest.fixture
def dave_client(dave) -> Client:
    client = Client()
    client.force_login(dave)
    return client


EDITOR_REFUSAL = "Your role in this project (editor) does not allow managing budgets: it needs admin."


def test_an_editor_may_not_add_change_or_delete_the_projects_budgets(dave_client, alice, team, service_calls):
    budget = BudgetFactory(project=team, amount=Decimal("10"), window="month")
    key = BudgetFactory(
        project=team, api_key=account_services.api_key_create(project=team, created_by=alice, name="ci")[0]
    )
    other_key = account_services.api_key_create(project=team, created_by=alice, name="other")[0]

    added = dave_client.post(
        f"{URL}add/", {"project": str(team.pk), "api_key": str(other_key.pk), "amount": "5", "window": "day"}
    )
    changed = dave_client.post(f"{URL}{budget.pk}/change/", {"amount": "2", "window": "day"})
    deleted = dave_client.post(f"{URL}{key.pk}/delete/", {"post": "yes"}, follow=True)

    assert added.status_code == changed.status_code == 200
    assert added.context["adminform"].form.non_field_errors() == [EDITOR_REFUSAL]
    assert changed.context["adminform"].form.non_field_errors() == [EDITOR_REFUSAL]
    assert deleted.redirect_chain == [(f"{URL}{key.pk}/change/", 302)]
    assert [str(message) for message in deleted.context["messages"]] == [EDITOR_REFUSAL]
    assert service_calls == []
    budget.refresh_from_db()
    assert (budget.amount, budget.window) == (Decimal("10"), "month")
    assert Budget.objects.filter(project=team).count() == 2


def test_staff_who_are_not_members_may_not_either(dave_client, alice, service_calls):
    budget = BudgetFactory(owner=alice, amount=Decimal("10"))

    changed = dave_client.post(f"{URL}{budget.pk}/change/", {"amount": "2", "window": "day"})

    assert changed.status_code == 200
    assert changed.context["adminform"].form.non_field_errors() == [
        f"You are not a member of the project {alice.personal_project.slug!r}, so you cannot change it here."
    ]
    assert service_calls == []
    budget.refresh_from_db()
    assert budget.amount == Decimal("10")


def test_an_admin_of_the_project_may(dave_client, dave, team, service_calls):
    project_services.member_set_role(project=team, user=dave, role=Role.ADMIN, acting_role=None)

    added = dave_client.post(f"{URL}add/", {"project": str(team.pk), "api_key": "", "amount": "5", "window": "day"})
    budget = Budget.objects.get(project=team)
    changed = dave_client.post(f"{URL}{budget.pk}/change/", {"amount": "2", "window": "month"})
    amount = Budget.objects.get(pk=budget.pk).amount
    deleted = dave_client.post(f"{URL}{budget.pk}/delete/", {"post": "yes"})

    assert added.status_code == changed.status_code == deleted.status_code == 302
    assert amount == Decimal("2")
    assert service_calls == ["budget_create", "budget_update", "budget_delete"]
    assert not Budget.objects.filter(project=team).exists()
