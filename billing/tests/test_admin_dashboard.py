"""The admin's cost dashboard (CostLogAdmin.dashboard_view): charts and tables read back from the page's
markup, as a browser would, against cost entries made in the test."""

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts import services as account_services
from accounts.tests.factories import ProjectFactory, UserFactory
from billing.chart import Bar, axis_ticks, bar_chart
from billing.models import CostLog
from billing.tests.factories import CostLogFactory
from runs.tests.factories import RunFactory

pytestmark = pytest.mark.django_db

URL = "/admin/billing/costlog/dashboard/"
DAY_1 = date(2026, 11, 2)
DAY_2 = date(2026, 11, 3)


class _Markup(HTMLParser):
    """The chart bars' and the table rows' attributes and cells, by chart and table id."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: dict[str, list[dict[str, str]]] = {}
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.totals: dict[str, dict[str, str]] = {}
        self._svg: str | None = None
        self._table: str | None = None
        self._row: dict[str, Any] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        classes = attributes.get("class", "").split()
        if tag == "svg":
            self._svg = attributes.get("id", "")
            self.bars[self._svg] = []
        elif tag == "rect" and "bar" in classes and self._svg is not None:
            self.bars[self._svg].append(attributes)
        elif tag == "table":
            self._table = attributes.get("id", "")
            self.rows[self._table] = []
        elif tag == "tr" and self._table is not None and "group-row" in classes:
            self._row = {**attributes, "cells": []}
        elif tag == "tr" and self._table is not None and "total-row" in classes:
            self.totals[self._table] = attributes
        elif tag == "td" and self._row is not None and {"label", "detail"} & set(classes):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg = None
        elif tag == "table":
            self._table = None
        elif tag == "td" and self._cell is not None and self._row is not None:
            self._row["cells"].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.rows[self._table].append(self._row)
            self._row = None


def _read(response: Any) -> _Markup:
    markup = _Markup()
    markup.feed(response.content.decode())
    return markup


def _bars(markup: _Markup, chart: str = "chart-spend") -> dict[str, tuple[str, str, str, str]]:
    """day -> (cost, tokens, runs, unknown-cost runs)."""
    return {
        bar["data-day"]: (bar["data-cost"], bar["data-tokens"], bar["data-runs"], bar["data-unknown-cost-runs"])
        for bar in markup.bars[chart]
    }


def _table(markup: _Markup, table: str) -> dict[tuple[str, ...], tuple[str, str, str, str]]:
    """the row's name cells -> (cost, tokens, runs, unknown-cost runs)."""
    return {
        tuple(row["cells"]): (row["data-cost"], row["data-tokens"], row["data-runs"], row["data-unknown-cost-runs"])
        for row in markup.rows[table]
    }


def _cost(run_owner: Any, on: date, total: str | None, **fields: Any) -> CostLog:
    """A cost entry of a run of `run_owner` (a user: their personal project), made at noon UTC on `on`;
    `total=None` for a run whose model had no price."""
    run_fields = {key[len("run__") :]: fields.pop(key) for key in list(fields) if key.startswith("run__")}
    run = RunFactory(owner=run_owner, **run_fields)
    if total is None:
        fields.update(cost_known=False, input_cost=None, output_cost=None, total_cost=None)
    else:
        fields.update(total_cost=Decimal(total))
    log = CostLogFactory(run=run, **fields)
    at = datetime(on.year, on.month, on.day, 12, tzinfo=UTC)
    CostLog.objects.filter(pk=log.pk).update(created_at=at)
    return log


def _range(start: date, end: date, **more: str) -> dict[str, str]:
    return {"start": start.isoformat(), "end": end.isoformat(), **more}


@pytest.fixture
def spend(alice, bob):
    """Alice: two runs on DAY_1 (one through her key), one on DAY_2; bob: one on DAY_2."""
    key = account_services.api_key_create(project=alice.personal_project, created_by=alice, name="ci")[0]
    return {
        "key": key,
        "logs": [
            _cost(alice, DAY_1, "0.000100", model="model-a", prompt_tokens=10, completion_tokens=5, api_key=key),
            _cost(alice, DAY_1, "0.000023", model="model-b", prompt_tokens=3, completion_tokens=4),
            _cost(alice, DAY_2, "0.0000012", model="model-a", prompt_tokens=1, completion_tokens=1),
            _cost(bob, DAY_2, "0.000200", model="model-a", prompt_tokens=20, completion_tokens=30),
        ],
    }


def test_charts_and_tables_show_every_project_by_default(admin_client, alice, bob, spend):
    response = admin_client.get(URL, _range(DAY_1 - timedelta(days=1), DAY_2))

    assert response.status_code == 200
    markup = _read(response)
    # A continuous axis: the day with no spend is a zero bar; both charts carry the same figures.
    expected_days = {
        "2026-11-01": ("0.00", "0", "0", "0"),
        "2026-11-02": ("0.000123", "22", "2", "0"),
        "2026-11-03": ("0.0002012", "52", "2", "0"),
    }
    assert _bars(markup, "chart-spend") == expected_days
    assert _bars(markup, "chart-tokens") == expected_days
    assert [bar["data-day"] for bar in markup.bars["chart-spend"]] == sorted(expected_days)
    assert [bar["data-value"] for bar in markup.bars["chart-tokens"]] == ["0", "22", "52"]
    first_prompt, second_prompt, third_prompt, bobs_prompt = (
        log.run.prompt_version.prompt.name for log in spend["logs"]
    )
    assert _table(markup, "by-model") == {
        ("testllm/model-a",): ("0.0003012", "67", "3", "0"),
        ("testllm/model-b",): ("0.000023", "7", "1", "0"),
    }
    assert _table(markup, "by-prompt") == {
        (first_prompt, "alice"): ("0.0001", "15", "1", "0"),
        (second_prompt, "alice"): ("0.000023", "7", "1", "0"),
        (third_prompt, "alice"): ("0.0000012", "2", "1", "0"),
        (bobs_prompt, "bob"): ("0.0002", "50", "1", "0"),
    }
    assert _table(markup, "by-project") == {
        ("alice", alice.personal_project.name): ("0.0001242", "24", "3", "0"),
        ("bob", bob.personal_project.name): ("0.0002", "50", "1", "0"),
    }
    assert _table(markup, "by-member") == {
        ("alice",): ("0.0001242", "24", "3", "0"),
        ("bob",): ("0.0002", "50", "1", "0"),
    }
    assert _table(markup, "by-key") == {
        (spend["key"].prefix, "ci", "alice"): ("0.0001", "15", "1", "0"),
        ("(no key)", "", ""): ("0.0002242", "59", "3", "0"),
    }
    for table in ("by-model", "by-prompt", "by-project", "by-member", "by-key"):
        assert markup.totals[table]["data-cost"] == "0.0003242"
        assert markup.totals[table]["data-runs"] == "4"
    # The costliest first.
    assert [row["data-label"] for row in markup.rows["by-project"]] == ["bob", "alice"]


def test_a_project_by_slug_or_id_narrows_everything(admin_client, alice, bob, spend):
    by_slug = admin_client.get(URL, _range(DAY_1, DAY_2, project="bob"))
    by_id = admin_client.get(URL, _range(DAY_1, DAY_2, project=str(bob.personal_project.pk)))

    assert by_slug.status_code == by_id.status_code == 200
    markup = _read(by_slug)
    assert (markup.bars, markup.rows, markup.totals) == (lambda m: (m.bars, m.rows, m.totals))(_read(by_id))
    assert _bars(markup) == {"2026-11-02": ("0.00", "0", "0", "0"), "2026-11-03": ("0.0002", "50", "1", "0")}
    assert list(_table(markup, "by-project")) == [("bob", bob.personal_project.name)]
    assert _table(markup, "by-model") == {("testllm/model-a",): ("0.0002", "50", "1", "0")}
    assert markup.totals["by-key"]["data-cost"] == "0.0002"
    assert '<option value="bob" selected>' in by_slug.content.decode()


def test_the_date_range_includes_both_days_and_nothing_else(admin_client, alice, spend):
    response = admin_client.get(URL, _range(DAY_2, DAY_2))

    markup = _read(response)
    assert _bars(markup) == {"2026-11-03": ("0.0002012", "52", "2", "0")}
    assert _table(markup, "by-model") == {("testllm/model-a",): ("0.0002012", "52", "2", "0")}
    after = _read(admin_client.get(URL, _range(DAY_2 + timedelta(days=1), DAY_2 + timedelta(days=3))))
    assert _table(after, "by-model") == {}
    assert after.totals["by-model"]["data-cost"] == "0.00"


def test_the_default_is_the_last_30_days_up_to_today(admin_client, alice):
    log = _cost(alice, timezone.now().astimezone(UTC).date(), "0.000042", prompt_tokens=40, completion_tokens=2)
    today = timezone.now().astimezone(UTC).date()

    markup = _read(admin_client.get(URL))

    days = [bar["data-day"] for bar in markup.bars["chart-spend"]]
    assert len(days) == 30
    assert days[0] == (today - timedelta(days=29)).isoformat()
    assert _bars(markup)[today.isoformat()] == ("0.000042", "42", "1", "0")
    assert _table(markup, "by-model") == {(f"testllm/{log.model}",): ("0.000042", "42", "1", "0")}


def test_unknown_cost_runs_are_counted_apart(admin_client, alice):
    _cost(alice, DAY_1, "0.000050", model="priced")
    _cost(alice, DAY_1, None, model="unpriced", prompt_tokens=7, completion_tokens=3)

    response = admin_client.get(URL, _range(DAY_1, DAY_1))

    markup = _read(response)
    assert _bars(markup) == {"2026-11-02": ("0.00005", "16", "2", "1")}
    assert _table(markup, "by-model") == {
        ("testllm/priced",): ("0.00005", "6", "1", "0"),
        ("testllm/unpriced",): ("0.00", "10", "1", "1"),
    }
    assert markup.totals["by-member"]["data-unknown-cost-runs"] == "1"
    page = response.content.decode()
    assert re.search(r'id="total-unknown-cost-runs">1</span>\s*run has\s*no known price', page)
    bar = next(b for b in markup.bars["chart-spend"])
    assert "1 of unknown cost (not in the sum)" in page
    assert bar["data-unknown-cost-runs"] == "1"


def test_deleted_users_and_runs_without_a_key_are_named(admin_client, alice):
    gone = UserFactory(username="gone")
    _cost(alice, DAY_1, "0.000010", run__created_by=gone)
    gone.delete()

    markup = _read(admin_client.get(URL, _range(DAY_1, DAY_1)))

    assert _table(markup, "by-member") == {("(deleted user)",): ("0.00001", "6", "1", "0")}
    assert list(_table(markup, "by-key")) == [("(no key)", "", "")]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "yesterday"}, "start: 'yesterday' is not a date: use YYYY-MM-DD."),
        ({"start": "2026-02-30"}, "start: '2026-02-30' is not a date of the calendar."),
        ({"end": "20261104"}, "end: '20261104' is not a date: use YYYY-MM-DD."),
        ({"start": "2026-11-05", "end": "2026-11-04"}, "end: The end is before the start."),
        ({"start": "2025-01-01", "end": "2026-01-02"}, "end: At most 366 days at a time."),
        ({"start": "9999-12-30", "end": "9999-12-31"}, "end: Choose an earlier day."),
        ({"project": "no-such-project"}, "project: No project has the slug or id 'no-such-project'."),
        ({"project": "8a0e7f5c-0000-4000-8000-000000000000"}, "project: No project has the slug or id"),
        ({"project": "bad\x00slug"}, "project: Not a project slug or id."),
        ({"project": "x" * 101}, "project: Not a project slug or id."),
        ({"start": "x", "project": "nope"}, "start: 'x' is not a date: use YYYY-MM-DD. project: No project"),
    ],
)
def test_bad_parameters_are_a_400_that_says_why(admin_client, params, message):
    response = admin_client.get(URL, params)

    assert response.status_code == 400
    page = response.content.decode()
    error = re.search(r'<p class="errornote" id="dashboard-error">(.*?)</p>', page, re.S)
    assert error is not None
    assert message.replace("'", "&#x27;") in error.group(1)
    assert 'id="dashboard-form"' in page  # the form is offered again
    assert 'id="chart-spend"' not in page


@pytest.mark.parametrize(
    ("params", "first_day", "days"),
    [
        ({"start": "2025-01-01", "end": "2026-01-01"}, "2025-01-01", 366),
        ({"start": "2026-11-02", "end": "2026-11-02"}, "2026-11-02", 1),
        # The default start stops at the calendar's first day instead of overflowing.
        ({"start": "", "end": "0001-01-05"}, "0001-01-01", 5),
    ],
)
def test_edge_ranges_are_accepted(admin_client, params, first_day, days):
    response = admin_client.get(URL, params)

    assert response.status_code == 200
    bars = _read(response).bars["chart-spend"]
    assert (bars[0]["data-day"], len(bars)) == (first_day, days)


def test_an_html_model_name_is_escaped_on_the_page(admin_client, alice):
    _cost(alice, DAY_1, "0.000010", model="<script>alert(1)</script>")

    page = admin_client.get(URL, _range(DAY_1, DAY_1)).content.decode()

    assert "<script>alert(1)" not in page
    assert "testllm/&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_page_loads_no_external_asset(admin_client, alice, spend):
    page = admin_client.get(URL, _range(DAY_1, DAY_2)).content.decode()

    assert re.findall(r"""(?:src|href|action)\s*=\s*["']?\s*(?:[a-z]+:)?//""", page, re.I) == []
    # The one URL on the page: the admin's own inline icons name the SVG namespace.
    assert set(re.findall(r"https?://[^\s\"'<>]*", page)) <= {"http://www.w3.org/2000/svg"}
    # Every asset and link is the site's own (the admin's static files, its pages, this form).
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page, re.I)
    assert references
    assert [ref for ref in references if not ref.startswith(("/", "?", "#"))] == []
    # No script of the dashboard's own: only the admin's (theme switcher, sidebar).
    scripts = re.findall(r"<script[^>]*>", page)
    assert scripts
    assert all(re.fullmatch(r'<script src="/static/admin/js/[a-z_]+\.js"( defer)?>', tag) for tag in scripts)


def test_the_cost_log_list_links_to_the_dashboard(admin_client):
    page = admin_client.get("/admin/billing/costlog/").content.decode()

    assert reverse("admin:billing_costlog_dashboard") == URL
    assert f'<a href="{URL}" id="cost-dashboard-link">Cost dashboard</a>' in page


def test_anyone_but_staff_is_sent_to_the_login_page(client, django_user_model):
    member = django_user_model.objects.create_user(username="not-staff", password="a-member-password")

    anonymous = client.get(URL)
    client.force_login(member)
    signed_in = client.get(URL)

    for response in (anonymous, signed_in):
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")


def test_staff_need_the_view_permission_on_cost_logs(client, django_user_model):
    staff = django_user_model.objects.create_user(username="staff", password="a-staff-password", is_staff=True)
    client.force_login(staff)

    refused = client.get(URL)
    staff.user_permissions.add(Permission.objects.get(codename="view_costlog"))
    allowed = client.get(URL)

    assert refused.status_code == 403
    assert allowed.status_code == 200


def _queries(client: Any, params: dict[str, str]) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(URL, params).status_code == 200
    return len(captured)


def test_the_number_of_queries_does_not_grow_with_the_entries(admin_client, alice, bob):
    params = _range(DAY_1, DAY_2 + timedelta(days=30), project="alice")
    _cost(alice, DAY_1, "0.000010")
    few = _queries(admin_client, params)
    for offset in range(12):
        owner = alice if offset % 2 else bob
        key = account_services.api_key_create(project=owner.personal_project, created_by=owner, name=f"k{offset}")[0]
        _cost(owner, DAY_1 + timedelta(days=offset), "0.000010", model=f"m-{offset}", api_key=key)
    ProjectFactory.create_batch(3)
    many = _queries(admin_client, params)
    everything = _queries(admin_client, _range(DAY_1, DAY_2 + timedelta(days=30)))

    assert few == many == everything + 1  # + the project's lookup by slug
    # Session and user, the project's lookup, the picker's projects, and one per table, the days and the total.
    assert many <= 2 + 1 + 1 + 7


def test_chart_escapes_every_text_and_attribute():
    hostile = '<script>alert("x")</script>'
    svg = bar_chart(
        element_id='chart"><script>',
        title=hostile,
        bars=[Bar(label=hostile, value=Decimal("0.5"), tooltip=hostile, data={"model": hostile})],
        x_label=hostile,
        y_label=hostile,
    )

    assert "<script" not in svg
    assert 'data-model="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"' in svg
    assert "<title>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</title>" in svg


def test_chart_refuses_a_data_attribute_name_it_cannot_escape():
    with pytest.raises(ValueError, match="Not a data attribute name"):
        bar_chart(
            element_id="c",
            title="t",
            bars=[Bar(label="d", value=1, tooltip="t", data={'x" onload="alert(1)': "1"})],
            x_label="x",
            y_label="y",
        )


def test_chart_draws_bars_to_scale_on_round_ticks():
    svg = bar_chart(
        element_id="c",
        title="t",
        bars=[Bar(label="a", value=0, tooltip="a"), Bar(label="b", value=7, tooltip="b")],
        x_label="x",
        y_label="y",
        integer=True,
    )

    heights = [float(h) for h in re.findall(r'<rect class="bar"[^>]* height="([0-9.]+)"', svg)]
    ticks = re.findall(r'<text class="tick y-tick"[^>]*>([^<]*)</text>', svg)
    assert heights[0] == 0
    assert ticks == ["0", "2", "4", "6", "8"]
    assert heights[1] == pytest.approx(168 * 7 / 8)  # plot height 168, axis to 8
    assert axis_ticks(Decimal("0.000123")) == [Decimal("0.00000"), *(Decimal("0.00005") * i for i in (1, 2, 3))]
    assert axis_ticks(Decimal(0)) == [Decimal(0), Decimal(1)]
    assert axis_ticks(Decimal(3), integer=True) == [Decimal(0), Decimal(1), Decimal(2), Decimal(3)]
