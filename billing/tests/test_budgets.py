"""Budgets: windows computed from the clock, reservations against the user's and the key's budgets,
settle and release, and the /api/v1/budgets endpoints (owner-scoped) and admin."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts import services as account_services
from billing import selectors, services
from billing.models import Budget, BudgetReservation, CostLog, ModelPrice
from billing.tests.factories import BudgetFactory, CostLogFactory
from llmops.tests.helpers import assert_error
from runs.models import Run
from runs.tests.factories import RunFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def price(db):
    # 1000 input tokens + 100 output tokens cost 0.002 + 0.0004 = 0.0024 at most.
    return ModelPrice.objects.create(
        provider="testllm",
        model="m",
        input_per_mtok=Decimal("2"),
        output_per_mtok=Decimal("4"),
        effective_from="2020-01-01",
    )


@pytest.fixture
def key(alice):
    return account_services.api_key_create(project=alice.personal_project, created_by=alice, name="ci")[0]


def _cost(owner, total, at, *, api_key=None, known=True):
    log = CostLogFactory(
        run=RunFactory(owner=owner),
        api_key=api_key,
        total_cost=total if known else None,
        input_cost=None,
        output_cost=None,
        cost_known=known,
    )
    CostLog.objects.filter(pk=log.pk).update(created_at=at)
    return log


def _usage(budget, now=NOW):
    annotated = selectors.budgets_with_usage(now=now).get(pk=budget.pk)
    return annotated.spent, annotated.reserved


def _queued_run(owner, api_key=None):
    return RunFactory(owner=owner, api_key=api_key, status=Run.Status.QUEUED)


def _reserve(owner, run, api_key=None, *, prompt_tokens=1000, max_tokens=100, model="m"):
    return services.budget_reserve(
        project=owner.personal_project,
        api_key=api_key,
        run_id=run.pk,
        provider="testllm",
        model=model,
        prompt_tokens_bound=prompt_tokens,
        max_completion_tokens=max_tokens,
    )


# Windows


@pytest.mark.parametrize(
    ("window", "now", "start", "end"),
    [
        (
            "day",
            datetime(2025, 3, 15, 12, 0, tzinfo=UTC),
            datetime(2025, 3, 15, tzinfo=UTC),
            datetime(2025, 3, 16, tzinfo=UTC),
        ),
        (
            "month",
            datetime(2025, 3, 15, 12, 0, tzinfo=UTC),
            datetime(2025, 3, 1, tzinfo=UTC),
            datetime(2025, 4, 1, tzinfo=UTC),
        ),
        (
            "month",
            datetime(2025, 12, 31, 23, 59, tzinfo=UTC),
            datetime(2025, 12, 1, tzinfo=UTC),
            datetime(2026, 1, 1, tzinfo=UTC),
        ),
        (
            "month",
            datetime(2024, 2, 29, 1, 0, tzinfo=UTC),
            datetime(2024, 2, 1, tzinfo=UTC),
            datetime(2024, 3, 1, tzinfo=UTC),
        ),
        ("none", datetime(2025, 3, 15, 12, 0, tzinfo=UTC), None, None),
    ],
)
def test_windows_are_utc_days_and_months(window, now, start, end):
    assert selectors.budget_window(window=window, now=now) == (start, end)


def test_a_window_is_taken_in_utc_whatever_the_callers_zone():
    from zoneinfo import ZoneInfo

    # 00:30 on the 16th in Berlin (UTC+1 in March) is still the 15th in UTC.
    berlin = datetime(2025, 3, 16, 0, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert selectors.budget_window(window="day", now=berlin)[0] == datetime(2025, 3, 15, tzinfo=UTC)


def test_spend_counts_known_costs_of_the_current_window_and_resets_with_the_clock(alice, bob):
    day = BudgetFactory(owner=alice, window=Budget.Window.DAY)
    _cost(alice, Decimal("1.25"), NOW - timedelta(hours=2))  # today
    _cost(alice, Decimal("2"), datetime(2025, 3, 14, 23, 59, tzinfo=UTC))  # yesterday, same month
    _cost(alice, Decimal("4"), datetime(2025, 2, 28, 12, 0, tzinfo=UTC))  # previous month
    _cost(alice, None, NOW - timedelta(hours=1), known=False)  # unknown cost: never a silent number
    _cost(bob, Decimal("100"), NOW - timedelta(hours=1))  # someone else's

    assert _usage(day) == (Decimal("1.25"), 0)
    Budget.objects.filter(pk=day.pk).update(window=Budget.Window.MONTH)
    assert _usage(day) == (Decimal("3.25"), 0)
    Budget.objects.filter(pk=day.pk).update(window=Budget.Window.NONE)
    assert _usage(day) == (Decimal("7.25"), 0)

    # The next day a day budget starts from zero, the next month a month budget does: no job ran.
    Budget.objects.filter(pk=day.pk).update(window=Budget.Window.DAY)
    assert _usage(day, now=datetime(2025, 3, 16, 0, 0, 1, tzinfo=UTC)) == (0, 0)
    Budget.objects.filter(pk=day.pk).update(window=Budget.Window.MONTH)
    assert _usage(day, now=datetime(2025, 3, 31, 23, 0, tzinfo=UTC)) == (Decimal("3.25"), 0)
    assert _usage(day, now=datetime(2025, 4, 1, 0, 0, tzinfo=UTC)) == (0, 0)


def test_a_keys_budget_counts_that_keys_spend_only(alice, key):
    other_key = account_services.api_key_create(project=alice.personal_project, created_by=alice, name="other")[0]
    key_budget = BudgetFactory(owner=alice, api_key=key, window=Budget.Window.NONE)
    user_budget = BudgetFactory(owner=alice, window=Budget.Window.NONE)
    _cost(alice, Decimal("1"), NOW, api_key=key)
    _cost(alice, Decimal("2"), NOW, api_key=other_key)
    _cost(alice, Decimal("4"), NOW)  # a session run, no key

    assert _usage(key_budget) == (Decimal("1"), 0)
    assert _usage(user_budget) == (Decimal("7"), 0)


# Reserve, settle, release


def test_reserve_holds_the_maximum_cost_against_every_budget_that_applies(alice, key, price):
    user_budget = BudgetFactory(owner=alice, amount=Decimal("1"))
    key_budget = BudgetFactory(owner=alice, api_key=key, amount=Decimal("1"))
    BudgetFactory(
        owner=alice,
        api_key=account_services.api_key_create(project=alice.personal_project, created_by=alice, name="x")[0],
    )  # not this key's
    run = _queued_run(alice, key)

    reservations = _reserve(alice, run, key)

    assert {r.budget_id for r in reservations} == {user_budget.pk, key_budget.pk}
    assert all(r.amount == Decimal("0.0024") and r.status == "held" for r in reservations)
    assert _usage(user_budget, now=timezone.now()) == (0, Decimal("0.0024"))
    assert _usage(key_budget, now=timezone.now()) == (0, Decimal("0.0024"))


def test_reserve_refuses_a_run_that_does_not_fit(alice, price):
    budget = BudgetFactory(owner=alice, amount=Decimal("0.005"), window=Budget.Window.DAY)
    _cost(alice, Decimal("0.001"), timezone.now())
    _reserve(alice, _queued_run(alice))  # holds 0.0024; 0.0016 is left

    with pytest.raises(services.BudgetRefused) as refused:
        _reserve(alice, _queued_run(alice))

    assert refused.value.status_code == 402
    assert refused.value.code == "budget_exceeded"
    message = refused.value.message
    assert str(budget.pk) in message
    assert "0.0024 USD" in message  # the run's maximum
    assert "0.005 USD per day" in message
    assert "spent 0.001 USD" in message
    assert "reserved 0.0024 USD" in message
    assert "remaining 0.0016 USD" in message
    assert BudgetReservation.objects.count() == 1
    # Exactly what is left still fits.
    _reserve(alice, _queued_run(alice), prompt_tokens=600, max_tokens=100)  # 0.0012 + 0.0004
    assert _usage(budget, now=timezone.now()) == (Decimal("0.001"), Decimal("0.004"))


def test_the_user_budget_and_the_key_budget_are_both_enforced(alice, key, price):
    other_key = account_services.api_key_create(project=alice.personal_project, created_by=alice, name="other")[0]
    BudgetFactory(owner=alice, amount=Decimal("0.003"))
    key_budget = BudgetFactory(owner=alice, api_key=key, amount=Decimal("100"))

    _reserve(alice, _queued_run(alice, key), key)
    # The user-wide budget has 0.0006 left, whichever key (or none) the next run comes through.
    for api_key in (key, other_key, None):
        with pytest.raises(services.BudgetRefused):
            _reserve(alice, _queued_run(alice, api_key), api_key)

    # And the key's budget binds even when the user's has room.
    Budget.objects.filter(project=alice.personal_project, api_key__isnull=True).update(amount=Decimal("100"))
    Budget.objects.filter(pk=key_budget.pk).update(amount=Decimal("0.003"))
    with pytest.raises(services.BudgetRefused) as refused:
        _reserve(alice, _queued_run(alice, key), key)
    assert f"key {key.prefix}" in refused.value.message
    assert len(_reserve(alice, _queued_run(alice, other_key), other_key)) == 1  # only the user's applies


def test_an_unknown_price_is_refused_only_when_a_budget_applies(alice, bob):
    assert _reserve(bob, _queued_run(bob), model="unpriced") == []  # no budget: admitted, cost recorded later
    BudgetFactory(owner=alice, amount=Decimal("1000"))

    with pytest.raises(services.BudgetRefused) as refused:
        _reserve(alice, _queued_run(alice), model="unpriced")

    assert (refused.value.status_code, refused.value.code) == (402, "price_unknown")
    assert "testllm/unpriced" in refused.value.message
    assert not BudgetReservation.objects.exists()


def test_settle_replaces_the_hold_with_the_real_cost(alice, price):
    budget = BudgetFactory(owner=alice, amount=Decimal("1"))
    run = _queued_run(alice)
    _reserve(alice, run)
    assert _usage(budget, now=timezone.now()) == (0, Decimal("0.0024"))

    services.cost_record(
        run_id=run.pk,
        project=alice.personal_project,
        api_key=None,
        provider="testllm",
        model="m",
        prompt_tokens=500,
        completion_tokens=50,
        tokens_estimated=False,
        prompt_version_id=run.prompt_version_id,
    )
    assert services.budget_settle(run_id=run.pk) == 1

    assert _usage(budget, now=timezone.now()) == (Decimal("0.0012"), 0)  # 500*2 + 50*4 per million
    reservation = BudgetReservation.objects.get(run=run)
    assert reservation.status == "settled" and reservation.closed_at is not None
    assert services.budget_settle(run_id=run.pk) == 0  # a second delivery changes nothing
    assert services.budget_release(run_id=run.pk) == 0  # nor does a late release
    assert BudgetReservation.objects.get(run=run).status == "settled"


def test_release_frees_the_hold(alice, key, price):
    budgets = [BudgetFactory(owner=alice), BudgetFactory(owner=alice, api_key=key)]
    run = _queued_run(alice, key)
    _reserve(alice, run, key)

    assert services.budget_release(run_id=run.pk) == 2

    assert set(BudgetReservation.objects.values_list("status", flat=True)) == {"released"}
    assert all(_usage(b, now=timezone.now()) == (0, 0) for b in budgets)


def test_a_hold_made_in_an_earlier_window_still_counts(alice, price):
    # Its run's cost will land in the current window when it finishes, not in the window it was made in.
    budget = BudgetFactory(owner=alice, amount=Decimal("1"), window=Budget.Window.DAY)
    run = _queued_run(alice)
    _reserve(alice, run)
    BudgetReservation.objects.filter(run=run).update(created_at=timezone.now() - timedelta(days=2))

    assert _usage(budget, now=timezone.now()) == (0, Decimal("0.0024"))


# API


def _body(response):
    assert response.status_code in (200, 201), response.content
    return response.json()


def test_create_list_update_delete(alice_client, alice, key, price):
    created = _body(alice_client.post("/api/v1/budgets", {"amount": "5", "window": "day"}, format="json"))
    for_key = _body(
        alice_client.post("/api/v1/budgets", {"amount": "1.5", "window": "none", "api_key": str(key.pk)}, format="json")
    )
    _cost(alice, Decimal("0.75"), timezone.now(), api_key=key)
    _reserve(alice, _queued_run(alice, key), key)

    listed = alice_client.get("/api/v1/budgets").json()
    assert listed["count"] == 2
    by_id = {b["id"]: b for b in listed["results"]}
    user_wide, keyed = by_id[created["id"]], by_id[for_key["id"]]
    assert user_wide["api_key"] is None and keyed["api_key"] == str(key.pk)
    assert keyed["api_key_prefix"] == key.prefix
    assert Decimal(user_wide["spent"]) == Decimal("0.75")
    assert Decimal(user_wide["reserved"]) == Decimal("0.0024")
    assert Decimal(user_wide["remaining"]) == Decimal("5") - Decimal("0.7524")
    assert Decimal(keyed["remaining"]) == Decimal("1.5") - Decimal("0.7524")
    assert user_wide["currency"] == "USD"
    today = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert datetime.fromisoformat(user_wide["window_started_at"]) == today
    assert datetime.fromisoformat(user_wide["resets_at"]) == today + timedelta(days=1)
    assert keyed["window_started_at"] is None and keyed["resets_at"] is None

    patched = alice_client.patch(
        f"/api/v1/budgets/{created['id']}", {"amount": "0.5", "window": "month"}, format="json"
    )
    assert _body(patched)["window"] == "month"
    budget = Budget.objects.get(pk=created["id"])
    assert (budget.amount, budget.window) == (Decimal("0.5"), "month")
    assert Decimal(_body(patched)["remaining"]) == Decimal("0.5") - Decimal("0.7524")  # negative: overspent

    assert alice_client.delete(f"/api/v1/budgets/{created['id']}").status_code == 204
    assert [str(pk) for pk in Budget.objects.values_list("pk", flat=True)] == [for_key["id"]]


def test_one_budget_per_scope(alice_client, key):
    assert alice_client.post("/api/v1/budgets", {"amount": "5", "window": "day"}, format="json").status_code == 201
    again = alice_client.post("/api/v1/budgets", {"amount": "9", "window": "month"}, format="json")
    assert_error(again, 409, "budget_exists")
    body = {"amount": "1", "window": "day", "api_key": str(key.pk)}
    assert alice_client.post("/api/v1/budgets", body, format="json").status_code == 201
    assert_error(alice_client.post("/api/v1/budgets", body, format="json"), 409, "budget_exists")
    assert Budget.objects.count() == 2


def test_invalid_bodies_are_400(alice_client):
    for body, fields in [
        ({"amount": "-1", "window": "day"}, {"amount"}),
        ({"amount": "1", "window": "week"}, {"window"}),
        ({"window": "day"}, {"amount"}),
        ({"amount": "1", "window": "day", "owner": "x"}, {"owner"}),
    ]:
        assert_error(alice_client.post("/api/v1/budgets", body, format="json"), 400, "validation_error", fields=fields)
    assert not Budget.objects.exists()


def test_budgets_are_owner_scoped(alice_client, bob_client, alice, bob):
    alices = BudgetFactory(owner=alice)
    bobs_key = account_services.api_key_create(project=bob.personal_project, created_by=bob, name="bob's")[0]

    assert bob_client.get("/api/v1/budgets").json()["count"] == 0
    assert_error(bob_client.get(f"/api/v1/budgets/{alices.pk}"), 404, "not_found")
    assert_error(bob_client.patch(f"/api/v1/budgets/{alices.pk}", {"amount": "0"}, format="json"), 404)
    assert_error(bob_client.delete(f"/api/v1/budgets/{alices.pk}"), 404)
    assert_error(bob_client.get("/api/v1/budgets/not-a-uuid"), 404)
    # Nor may alice put a budget on bob's key.
    response = alice_client.post(
        "/api/v1/budgets", {"amount": "1", "window": "day", "api_key": str(bobs_key.pk)}, format="json"
    )
    assert_error(response, 400, fields={"api_key"})
    assert Budget.objects.get().amount == alices.amount  # unchanged, and nothing created


def test_reading_needs_billing_read_and_writing_keys_manage(alice):
    from rest_framework.test import APIClient

    _, plaintext = account_services.api_key_create(
        project=alice.personal_project, created_by=alice, name="reader", scopes=["billing:read"]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    budget = BudgetFactory(owner=alice)

    assert client.get("/api/v1/budgets").status_code == 200
    assert client.get(f"/api/v1/budgets/{budget.pk}").status_code == 200
    assert_error(client.post("/api/v1/budgets", {"amount": "1", "window": "day"}, format="json"), 403)
    assert_error(client.patch(f"/api/v1/budgets/{budget.pk}", {"amount": "1"}, format="json"), 403)
    assert_error(client.delete(f"/api/v1/budgets/{budget.pk}"), 403)
    assert Budget.objects.get().amount == Decimal("10")


def test_put_is_not_offered(alice_client, alice):
    budget = BudgetFactory(owner=alice)
    response = alice_client.put(f"/api/v1/budgets/{budget.pk}", {"amount": "1", "window": "day"}, format="json")
    assert_error(response, 405)


# Admin


def test_admin_lists_budgets_with_their_usage(admin_client, alice, price):
    budget = BudgetFactory(owner=alice, amount=Decimal("2"))
    _cost(alice, Decimal("0.5"), timezone.now())
    _reserve(alice, _queued_run(alice))

    page = admin_client.get("/admin/billing/budget/").content.decode()

    assert str(budget.pk) in page
    assert '<td class="field-spent">0.50</td>' in page
    assert '<td class="field-reserved">0.0024</td>' in page
    assert '<td class="field-remaining">1.4976</td>' in page
    assert admin_client.get("/admin/billing/budget/?scope=key").content.decode().count(str(budget.pk)) == 0


def test_admin_refuses_a_key_of_another_user(admin_client, alice, bob):
    bobs_key = account_services.api_key_create(project=bob.personal_project, created_by=bob, name="bob's")[0]
    response = admin_client.post(
        "/admin/billing/budget/add/",
        {"project": str(alice.personal_project.pk), "api_key": str(bobs_key.pk), "amount": "1", "window": "day"},
    )
    assert response.status_code == 200  # the form again, with the error
    assert "belongs to another project" in response.content.decode()
    assert not Budget.objects.exists()


def test_reservations_are_read_only_in_the_admin(admin_client, alice, price):
    BudgetFactory(owner=alice)
    reservation = _reserve(alice, _queued_run(alice))[0]

    assert admin_client.get("/admin/billing/budgetreservation/").status_code == 200
    assert admin_client.get("/admin/billing/budgetreservation/add/").status_code == 403
    assert admin_client.post(f"/admin/billing/budgetreservation/{reservation.pk}/delete/").status_code == 403
