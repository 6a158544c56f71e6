"""The runs changelist and a run's page in the admin: every filter narrows to the right runs, search
finds output text, the conversation is shown escaped, and the page's queries do not grow with its rows."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from billing.tests.factories import CostLogFactory
from prompts.tests.factories import prompt_with_version
from runs.models import BatchItem, Run
from runs.tests.factories import BatchFactory, RunFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/runs/run/"


def _listed(admin_client, **params) -> set:
    response = admin_client.get(CHANGELIST, params)
    assert response.status_code == 200, response.status_code
    return {run.pk for run in response.context["cl"].result_list}


def _filter_choices(admin_client, title: str, **params) -> list[str]:
    response = admin_client.get(CHANGELIST, params)
    spec = next(spec for spec in response.context["cl"].filter_specs if spec.title == title)
    return [label for _, label in spec.lookup_choices]


def test_project_filter(admin_client, alice, bob):
    mine, theirs = RunFactory(owner=alice), RunFactory(owner=bob)

    assert _listed(admin_client, project=str(alice.personal_project.pk)) == {mine.pk}
    assert _listed(admin_client, project=str(bob.personal_project.pk)) == {theirs.pk}
    assert _listed(admin_client) == {mine.pk, theirs.pk}


def test_status_filter(admin_client, alice):
    succeeded = RunFactory(owner=alice)
    failed = RunFactory(owner=alice, status=Run.Status.FAILED, output="", error_code="provider_error")

    assert _listed(admin_client, status__exact="failed") == {failed.pk}
    assert _listed(admin_client, status__exact="succeeded") == {succeeded.pk}


def test_prompt_filter_and_its_choices_follow_the_project(admin_client, alice, bob):
    greet = prompt_with_version(alice, name="greet")[1]
    summarize = prompt_with_version(alice, name="summarize")[1]
    bobs = prompt_with_version(bob, name="greet")[1]
    greeted = RunFactory(owner=alice, prompt_version=greet)
    RunFactory(owner=alice, prompt_version=summarize)
    RunFactory(owner=bob, prompt_version=bobs)
    prompt_with_version(alice, name="never-run")

    assert _listed(admin_client, prompt=str(greet.prompt_id)) == {greeted.pk}
    # Without a project the labels say whose prompt; with one, only its prompts that have runs.
    assert _filter_choices(admin_client, "prompt") == ["alice / greet", "alice / summarize", "bob / greet"]
    assert _filter_choices(admin_client, "prompt", project=str(alice.personal_project.pk)) == ["greet", "summarize"]


def test_model_and_provider_filters(admin_client, alice):
    small = RunFactory(owner=alice, model="small", provider="testllm")
    large = RunFactory(owner=alice, model="large", provider="other")

    assert _listed(admin_client, model="small") == {small.pk}
    assert _listed(admin_client, provider="other") == {large.pk}


def test_date_filter(admin_client, alice):
    recent, old = RunFactory(owner=alice), RunFactory(owner=alice)
    Run.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=30))
    week_ago = timezone.now() - timedelta(days=7)

    assert _listed(admin_client, created_at__gte=week_ago.isoformat()) == {recent.pk}


def test_batch_filter(admin_client, alice):
    batch, other_batch = BatchFactory(owner=alice), BatchFactory(owner=alice)
    in_batch, in_other, alone = RunFactory(owner=alice), RunFactory(owner=alice), RunFactory(owner=alice)
    BatchItem.objects.filter(batch=batch, line=0).update(run=in_batch)
    BatchItem.objects.filter(batch=other_batch, line=0).update(run=in_other)

    assert _listed(admin_client, batch="yes") == {in_batch.pk, in_other.pk}
    assert _listed(admin_client, batch="no") == {alone.pk}
    assert _listed(admin_client, batch=str(batch.pk)) == {in_batch.pk}
    assert str(batch) in _filter_choices(admin_client, "batch", batch=str(batch.pk))


def test_unpriced_filter(admin_client, alice):
    unknown_price = RunFactory(owner=alice)
    CostLogFactory(run=unknown_price, cost_known=False, input_cost=None, output_cost=None, total_cost=None)
    no_cost_entry = RunFactory(owner=alice)
    priced = RunFactory(owner=alice)
    CostLogFactory(run=priced)
    RunFactory(owner=alice, status=Run.Status.FAILED, output="")  # failed: nothing to charge

    assert _listed(admin_client, unpriced="yes") == {unknown_price.pk, no_cost_entry.pk}
    assert _listed(admin_client, unpriced="no") == {priced.pk}


def test_a_filter_value_that_is_not_an_id_is_no_error(admin_client, alice):
    RunFactory(owner=alice)

    for params in ({"project": "nope"}, {"prompt": "nope"}, {"batch": "nope"}, {"unpriced": "maybe"}):
        response = admin_client.get(CHANGELIST, params)
        assert response.status_code == 302, params
        assert response["Location"].endswith("?e=1")


def test_search_finds_output_text_and_error_messages(admin_client, alice):
    unicorn = RunFactory(owner=alice, output="Once upon a time, a unicorn.")
    timed_out = RunFactory(owner=alice, status=Run.Status.FAILED, output="", error_message="The read timed out")
    RunFactory(owner=alice, output="Nothing to see.")

    assert _listed(admin_client, q="unicorn") == {unicorn.pk}
    assert _listed(admin_client, q="timed out") == {timed_out.pk}


def test_changelist_columns(admin_client, alice):
    version = prompt_with_version(alice, name="greet")[1]
    priced = RunFactory(owner=alice, prompt_version=version, attempts=2)
    CostLogFactory(run=priced, total_cost=Decimal("0.0000012"))
    RunFactory(owner=alice, status=Run.Status.FAILED, output="", error_code="provider_timeout")

    page = admin_client.get(CHANGELIST).content.decode()

    assert '<td class="field-prompt">greet v1</td>' in page
    assert '<td class="field-cost">0.0000012</td>' in page
    assert '<td class="field-cost">-</td>' in page
    assert '<td class="field-attempts">2</td>' in page
    assert '<td class="field-error_code">provider_timeout</td>' in page


def _changelist_queries(admin_client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    return len(queries)


def _run_with_everything(owner):
    run = RunFactory(owner=owner)
    CostLogFactory(run=run)
    batch = BatchFactory(owner=owner)
    BatchItem.objects.filter(batch=batch, line=0).update(run=run)
    return run


def test_changelist_queries_do_not_grow_with_its_rows(admin_client, django_user_model):
    owners = [django_user_model.objects.create_user(username=f"owner{n}") for n in range(20)]
    _run_with_everything(owners[0])
    one = _changelist_queries(admin_client)
    for owner in owners[1:]:
        _run_with_everything(owner)

    twenty = _changelist_queries(admin_client)

    assert Run.objects.count() == 20
    assert twenty == one


def test_run_page_shows_the_conversation_escaped(admin_client, alice):
    run = RunFactory(
        owner=alice,
        rendered_input=[
            {"role": "system", "content": "You are <b>terse</b>."},
            {"role": "user", "content": "Say <script>alert(1)</script>\n  on two lines"},
        ],
        output="<i>Hi</i> & bye",
        variables={"name": "<Ada>"},
        params={"max_tokens": 32},
        request_hash="f" * 64,
        error_code="",
    )

    response = admin_client.get(f"{CHANGELIST}{run.pk}/change/")
    page = response.content.decode()

    assert response.status_code == 200
    assert '<div class="run-message-role">system</div>' in page
    assert '<pre class="run-message-content">You are &lt;b&gt;terse&lt;/b&gt;.</pre>' in page
    assert "Say &lt;script&gt;alert(1)&lt;/script&gt;\n  on two lines</pre>" in page
    assert "<script>alert(1)" not in page
    assert '<div class="run-message-role">assistant (output)</div>' in page
    assert "&lt;i&gt;Hi&lt;/i&gt; &amp; bye" in page
    assert "&quot;name&quot;: &quot;&lt;Ada&gt;&quot;" in page
    assert "f" * 64 not in page  # request_hash is not shown
    try_url = reverse("admin:runs_run_try", args=[run.prompt_version_id])
    assert f'href="{try_url}" id="run-try-version"' in page


def test_run_page_shows_usage_cost_errors_and_links(admin_client, alice):
    batch = BatchFactory(owner=alice)
    run = RunFactory(
        owner=alice,
        status=Run.Status.FAILED,
        output="",
        attempts=3,
        latency_ms=1234,
        error_code="provider_timeout",
        error_message="No answer within 5 s.",
    )
    BatchItem.objects.filter(batch=batch, line=1).update(run=run)

    page = admin_client.get(f"{CHANGELIST}{run.pk}/change/").content.decode()

    assert "<code>provider_timeout</code>: No answer within 5 s." in page
    assert "No output: the run failed." in page
    assert "1234" in page
    assert reverse("admin:prompts_promptversion_change", args=[run.prompt_version_id]) in page
    assert reverse("admin:runs_batch_change", args=[batch.pk]) in page
    assert f"{CHANGELIST}?batch={batch.pk}" in page


def test_batch_list_links_to_its_runs(admin_client, alice):
    batch = BatchFactory(owner=alice)

    page = admin_client.get("/admin/runs/batch/").content.decode()

    assert f'href="{CHANGELIST}?batch={batch.pk}"' in page


def test_the_filters_show_facet_counts(admin_client, alice):
    priced = RunFactory(owner=alice)
    CostLogFactory(run=priced)
    RunFactory(owner=alice)
    batch = BatchFactory(owner=alice)
    BatchItem.objects.filter(batch=batch, line=0).update(run=priced)

    response = admin_client.get(CHANGELIST, {"_facets": "True", "batch": str(batch.pk)})
    page = response.content.decode()

    assert response.status_code == 200
    assert "Unpriced (0)" in page and "Priced (1)" in page
    assert "In a batch (1)" in page and "Not in a batch (1)" in page
