"""The daily rollup behind spend summaries (billing/rollup.py): a summary over whole past days, the
partial days at its edges and today gives exactly what the cost log says, for every group_by; days
are rolled once, only when final; two summaries racing roll a day once."""

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Count, Q, Sum
from django.utils import timezone

from accounts.tests.factories import UserFactory
from billing import rollup, selectors
from billing.models import CostDay, CostLog, CostRollup
from billing.tests.factories import CostLogFactory
from prompts import services as prompt_services
from prompts.tests.factories import prompt_with_version
from runs.tests.factories import RunFactory

pytestmark = pytest.mark.django_db


def _spend(owner, *, at, version=None, model="m-a", cost="0.010", tokens=(4, 2)):
    run = RunFactory(owner=owner, project=owner.personal_project, prompt_version=version, model=model)
    log = CostLogFactory(
        run=run,
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        total_cost=None if cost is None else Decimal(cost),
        input_cost=None if cost is None else Decimal(0),
        output_cost=None if cost is None else Decimal(0),
        cost_known=cost is not None,
    )
    CostLog.objects.filter(pk=log.pk).update(created_at=at)  # entries are stamped "now": back-dated here
    return log


@pytest.fixture
def spend(alice, bob):
    """Entries over the last five days and today, across models, versions and unknown costs."""
    prompt, v1 = prompt_with_version(alice, name="greet")
    v2 = prompt_services.prompt_version_create(prompt=prompt, created_by=alice, template="Hi {{ name }}")
    today = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for n in range(6):
        day = today - timedelta(days=5 - n)
        _spend(alice, at=day + timedelta(hours=1), version=v1, cost="0.010")
        _spend(alice, at=day + timedelta(hours=13), version=v2, model="m-b", cost="0.200", tokens=(10, 5))
        _spend(alice, at=day + timedelta(hours=23, minutes=59), cost=None)
    _spend(bob, at=today - timedelta(days=2), cost="9")  # another project's
    return today


def _expected(project, start, end, group_by):
    """What the cost log itself says: the summary before the rollup."""
    logs = CostLog.objects.filter(project=project)
    if start is not None:
        logs = logs.filter(created_at__gte=start)
    if end is not None:
        logs = logs.filter(created_at__lt=end)
    rows = (
        logs.annotate(group=selectors.GROUPINGS[group_by])
        .values("group")
        .annotate(
            runs=Count("id"),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cost=Sum("total_cost"),
            unknown_cost_runs=Count("id", filter=Q(cost_known=False)),
        )
    )
    return {
        row["group"]: (
            row["runs"],
            row["prompt_tokens"],
            row["completion_tokens"],
            row["cost"] or Decimal(0),
            row["unknown_cost_runs"],
        )
        for row in rows
    }


def _got(summary):
    names = ("runs", "prompt_tokens", "completion_tokens", "cost", "unknown_cost_runs")
    return {row["group"]: tuple(row[name] for name in names) for row in summary["groups"]}


@pytest.mark.parametrize("group_by", list(selectors.GROUPINGS))
def test_every_range_and_group_matches_the_cost_log(alice, spend, group_by):
    today = spend
    ranges = [
        (None, None),  # everything
        (today - timedelta(days=4), None),  # whole days and today
        (today - timedelta(days=4, hours=-12), today - timedelta(days=1, hours=2)),  # partial edges
        (today - timedelta(days=5), today - timedelta(days=2)),  # whole past days only
        (today, None),  # today only: nothing final
        (today - timedelta(days=3, hours=-2), today - timedelta(days=3, hours=-20)),  # inside one day
    ]
    for start, end in ranges:
        summary = selectors.cost_summary(project=alice.personal_project, start=start, end=end, group_by=group_by)

        assert _got(summary) == _expected(alice.personal_project, start, end, group_by), (start, end)
        total = summary["total"]
        assert total["runs"] == sum(row["runs"] for row in summary["groups"])
        assert total["cost"] == sum((row["cost"] for row in summary["groups"]), Decimal(0))


def test_final_days_are_rolled_once_and_today_never(alice, spend):
    today = spend.date()
    project = alice.personal_project
    selectors.cost_summary(project=project, start=None, end=None, group_by="model")
    markers = set(CostRollup.objects.filter(project=project).values_list("day", flat=True))
    rows = CostDay.objects.filter(project=project).count()

    selectors.cost_summary(project=project, start=None, end=None, group_by="prompt")

    assert today not in markers and max(markers) <= rollup.last_final_day()
    assert min(markers) == today - timedelta(days=5)
    assert CostDay.objects.filter(project=project).count() == rows  # nothing rolled twice
    assert not CostDay.objects.exclude(project=project).filter(project__personal_for__username="alice").exists()
    # Three entries a day, one row per (model, version, key, member): the summary reads 3 rows a day.
    assert rows == 3 * len(markers)


def test_a_range_from_centuries_back_rolls_up_only_days_with_entries(alice, spend):
    project = alice.personal_project
    ancient = datetime(5, 8, 19, 5, 49, tzinfo=UTC)  # Schemathesis's `from`: 22 s of empty days before

    summary = selectors.cost_summary(project=project, start=ancient, end=None, group_by="day")

    assert _got(summary) == _expected(project, ancient, None, "day")
    assert CostRollup.objects.filter(project=project).count() == 5  # the five whole final days
    empty = selectors.cost_summary(project=UserFactory().personal_project, start=ancient, end=None, group_by="day")
    assert empty["groups"] == [] and not CostRollup.objects.exclude(project=project).exists()


def test_a_day_is_final_only_after_the_grace_period():
    just_after_midnight = datetime(2026, 12, 7, 0, 2, tzinfo=UTC)
    later = datetime(2026, 12, 7, 0, 6, tzinfo=UTC)

    assert rollup.last_final_day(just_after_midnight) == datetime(2026, 12, 5).date()
    assert rollup.last_final_day(later) == datetime(2026, 12, 6).date()


def test_an_entry_a_summary_would_miss_is_not_in_a_final_day(alice, spend, monkeypatch):
    """Yesterday's last minute, read two minutes after midnight: yesterday is not final, so the
    entry still committing then is read from the cost log, and counted."""
    project = alice.personal_project
    monkeypatch.setattr(rollup, "last_final_day", lambda now=None: spend.date() - timedelta(days=2))
    before = selectors.cost_summary(project=project, start=None, end=None, group_by="day")
    _spend(alice, at=spend - timedelta(seconds=30), cost="1")

    after = selectors.cost_summary(project=project, start=None, end=None, group_by="day")

    yesterday = (spend - timedelta(days=1)).date()
    assert _got(after)[yesterday][0] == _got(before)[yesterday][0] + 1
    assert not CostRollup.objects.filter(project=project, day=yesterday).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_summaries_racing_roll_each_day_once(alice, spend):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent transactions need PostgreSQL")
    project = alice.personal_project
    results, errors = [], []
    barrier = threading.Barrier(4)

    def summarize():
        try:
            barrier.wait()
            results.append(selectors.cost_summary(project=project, start=None, end=None, group_by="model"))
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=summarize) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    expected = _expected(project, None, None, "model")
    assert all(_got(summary) == expected for summary in results) and len(results) == 4
    days = CostRollup.objects.filter(project=project).count()
    assert CostDay.objects.filter(project=project).count() == 3 * days
