"""Batches through the API, the services and the dispatch actor, on a real worker against the real
HTTP test provider: validation by line (nothing created) and skip_invalid, JSONL and CSV uploads,
the concurrency limit, progress, results export, cancel, refusals and 429s at dispatch, owners."""

import csv
import io
import json
import threading
import time
from decimal import Decimal
from http import HTTPStatus

import dramatiq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import override_settings
from dramatiq.brokers.stub import StubBroker

from accounts import ratelimit
from accounts import services as account_services
from billing.models import CostLog, ModelPrice
from llmops.errors import DomainError, ValidationFailed
from prompts import services as prompt_services
from prompts.tests.factories import prompt_with_version
from providers.models import Provider
from providers.tests.openai_server import error, slow
from runs import batch_files, batch_selectors, batch_services
from runs import services as run_services
from runs.models import Batch, BatchItem, Run
from runs.tasks import dispatch_batch
from runs.tests.worker import drain
from webhooks.models import WebhookDelivery, WebhookEndpoint

URL = "/api/v1/batches"


@pytest.fixture
def provider(provider_factory):
    return provider_factory(name="testllm", timeout=5.0)


@pytest.fixture
def version(alice, provider):
    _, version = prompt_with_version(
        alice,
        name="greet",
        template="Greet {{ name }} {{ times }} times.",
        variables={"name": {"type": "string"}, "times": {"type": "integer", "default": 1}},
        model="testllm/test-model",
    )
    return version


def _items(*names, **extra):
    return [{"variables": {"name": name, **extra}, "key": f"k-{name}"} for name in names]


def _create(owner, version, items, **options):
    batch, skipped = batch_services.batch_create(
        project=owner.personal_project,
        created_by=owner,
        api_key=None,
        prompt=str(version.prompt_id),
        items=batch_files.rows_from_items(items),
        **options,
    )
    return batch, skipped


def _wait_for_batch(batch_id, *, timeout=30.0, until=(Batch.Status.COMPLETED, Batch.Status.CANCELED)):
    deadline = time.monotonic() + timeout
    while True:
        batch = Batch.objects.get(pk=batch_id)
        if batch.status in until:
            return batch
        if time.monotonic() > deadline:
            counts = batch_selectors.batch_progress(batch)["counts"]
            raise AssertionError(f"batch still {batch.status} after {timeout}s: {counts}")
        time.sleep(0.05)


def _upload(client, name, content, **fields):
    return client.post(URL, {"file": SimpleUploadedFile(name, content.encode()), **fields}, format="multipart")


def _lines(response):
    return b"".join(response.streaming_content).decode()


# --- creation and validation ----------------------------------------------------------------------


def test_bad_rows_are_reported_by_line_and_nothing_is_created(alice_client, version):
    items = [
        {"variables": {"name": "Ada"}},
        {"variables": {}},  # missing
        {"variables": {"name": "Bob", "times": "twice"}},  # wrong type
        {"variables": {"name": "Cy", "mood": "happy"}},  # unknown
        "not an object",
        {"variables": {"name": "Di"}, "key": "0"},  # the generated key of item 0
    ]

    response = alice_client.post(URL, {"prompt": "greet", "items": items}, format="json")

    assert response.status_code == 400, response.json()
    error_body = response.json()["error"]
    assert error_body["code"] == "invalid_items"
    assert error_body["fields"] == {
        "items.1.variables.name": ["Required variable is missing."],
        "items.2.variables.times": ["Expected integer, got string."],
        "items.3.variables.mood": ["Unknown variable; this version does not declare it."],
        "items.4": ['Must be an object: {"variables": {...}, "key": "..."}.'],
        "items.5.key": ["Duplicate key: line 0 has it too."],
    }
    assert (Batch.objects.count(), BatchItem.objects.count(), Run.objects.count()) == (0, 0, 0)


def test_validation_stops_after_the_reported_maximum(alice, version):
    items = [{"variables": {}} for _ in range(10)]
    with override_settings(BATCH_MAX_REPORTED_ERRORS=3), pytest.raises(ValidationFailed) as caught:
        _create(alice, version, items)
    assert sorted(caught.value.fields) == [f"items.{i}.variables.name" for i in range(3)]
    assert Batch.objects.count() == 0


def test_skip_invalid_creates_the_valid_rows_and_lists_the_skipped(alice_client, version):
    items = [{"variables": {"name": "Ada"}}, {"variables": {"nom": "Bob"}}, {"variables": {"name": "Cy"}, "key": "c"}]

    response = alice_client.post(URL, {"prompt": "greet", "items": items, "skip_invalid": True}, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["item_count"], body["skipped_count"]) == (2, 1)
    assert body["skipped"] == [
        {
            "line": 1,
            "key": "1",
            "fields": {
                "items.1.variables.nom": ["Unknown variable; this version does not declare it."],
                "items.1.variables.name": ["Required variable is missing."],
            },
        }
    ]
    assert response["Location"] == f"http://testserver{URL}/{body['id']}"
    batch = Batch.objects.get(pk=body["id"])
    assert list(batch.items.values_list("line", "key", "variables")) == [
        (0, "0", {"name": "Ada"}),
        (2, "c", {"name": "Cy"}),
    ]


def test_a_batch_with_no_valid_row_is_refused(alice_client, version):
    response = alice_client.post(
        URL, {"prompt": "greet", "items": [{"variables": {}}], "skip_invalid": True}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_items"
    assert Batch.objects.count() == 0


def test_options_are_validated(alice_client, version):
    base = {"prompt": "greet", "items": _items("Ada")}
    cases = [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 65}, "concurrency"),
        ({"params": {"temperature": 9}}, "params.temperature"),
        ({"version": 1, "label": "production"}, "label"),
        ({"prompt": "nope"}, "prompt"),
        ({"surprise": 1}, "surprise"),
        ({"items": []}, "items"),
    ]
    for extra, field in cases:
        response = alice_client.post(URL, {**base, **extra}, format="json")
        assert response.status_code == 400, (extra, response.json())
        assert field in response.json()["error"]["fields"], (extra, response.json())
    assert Batch.objects.count() == 0


def test_too_many_items_is_refused(alice_client, version):
    with override_settings(BATCH_MAX_ITEMS=3):
        response = _upload(
            alice_client, "rows.jsonl", "".join(f'{{"name": "n{i}"}}\n' for i in range(4)), prompt="greet"
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_many_items"
    assert Batch.objects.count() == 0


def test_a_label_is_resolved_once_at_creation(alice, version, db):
    prompt = version.prompt
    prompt_services.label_move(prompt=prompt, label="production", version_number=1, moved_by=alice)
    batch, _ = batch_services.batch_create(
        project=alice.personal_project,
        created_by=alice,
        api_key=None,
        prompt="greet",
        label="production",
        items=batch_files.rows_from_items(_items("Ada")),
    )
    v2 = prompt_services.prompt_version_create(
        prompt=prompt,
        created_by=alice,
        template="Hi {{ name }}.",
        variables={"name": {"type": "string"}},
        model="testllm/test-model",
    )
    prompt_services.label_move(prompt=prompt, label="production", version_number=v2.number, moved_by=alice)

    batch_services.batch_dispatch(batch_id=batch.pk)

    run = Run.objects.get(batch_item__batch=batch)
    assert run.prompt_version_id == version.pk
    assert run.rendered_input == [{"role": "user", "content": "Greet Ada 1 times."}]


# --- uploads ---------------------------------------------------------------------------------------


def test_jsonl_upload_takes_wrapped_and_bare_lines(alice_client, version):
    content = (
        '{"variables": {"name": "Ada"}, "key": "a"}\n'
        "\n"  # blank lines are skipped but counted
        '{"name": "Bob", "times": 2}\r\n'
        '{"variables": {"name": "Cy"}}\n'
    )

    response = _upload(alice_client, "rows.jsonl", content, prompt="greet", concurrency=2, params='{"temperature": 0}')

    assert response.status_code == 201, response.json()
    batch = Batch.objects.get(pk=response.json()["id"])
    assert (batch.concurrency, batch.params, batch.item_count) == (2, {"temperature": 0}, 3)
    assert list(batch.items.values_list("line", "key", "variables")) == [
        (1, "a", {"name": "Ada"}),
        (3, "3", {"name": "Bob", "times": 2}),
        (4, "4", {"name": "Cy"}),
    ]


def test_jsonl_upload_reports_bad_lines_by_line_number(alice_client, version):
    content = '{"name": "Ada"}\n{"name": \n[1, 2]\n{"name": 5}\n'

    response = _upload(alice_client, "rows.jsonl", content, prompt="greet")

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"items.2", "items.3", "items.4.variables.name"}
    assert fields["items.2"][0].startswith("Invalid JSON")
    assert fields["items.3"] == ["Each line must be a JSON object."]
    assert fields["items.4.variables.name"] == ["Expected string, got integer."]
    assert Batch.objects.count() == 0


def test_csv_upload_converts_cells_to_the_declared_types(alice_client, version):
    content = 'name,times,key\nAda,3,first\n"Bob, Jr.",,\n"Multi\nline",2,m\n'

    response = _upload(alice_client, "rows.csv", content, prompt="greet")

    assert response.status_code == 201, response.json()
    batch = Batch.objects.get(pk=response.json()["id"])
    assert list(batch.items.values_list("line", "key", "variables")) == [
        (2, "first", {"name": "Ada", "times": 3}),
        (3, "3", {"name": "Bob, Jr."}),  # an empty cell is "not given": the default applies
        (4, "m", {"name": "Multi\nline", "times": 2}),
    ]


def test_csv_upload_reports_bad_rows_by_file_line(alice_client, version):
    content = "name,times\nAda,1\nBob,many\nCy\n"

    response = _upload(alice_client, "rows.csv", content, prompt="greet")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "items.3.variables.times": ["Expected integer, got string."],
        "items.4": ["Expected 2 fields, got 1."],
    }
    assert Batch.objects.count() == 0


def test_upload_format_can_be_given_and_must_be_utf8(alice_client, version):
    response = _upload(alice_client, "rows.txt", "name\nAda\n", prompt="greet", format="csv")
    assert response.status_code == 201, response.json()

    bad = alice_client.post(
        URL, {"file": SimpleUploadedFile("rows.jsonl", b'{"name": "\xff"}\n'), "prompt": "greet"}, format="multipart"
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"] == {"items.1": ["Not UTF-8."]}


def test_an_upload_over_the_limit_is_413(alice_client, version):
    with override_settings(BATCH_UPLOAD_MAX_BYTES=100):
        response = _upload(alice_client, "rows.jsonl", '{"name": "Ada"}\n' * 20, prompt="greet")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert Batch.objects.count() == 0


# --- dispatch (the service, without a worker) ------------------------------------------------------


def test_dispatch_respects_the_limit_and_is_idempotent(alice, version):
    batch, _ = _create(alice, version, _items("A", "B", "C", "D", "E"), concurrency=2)

    assert batch_services.batch_dispatch(batch_id=batch.pk) == 2
    assert batch_services.batch_dispatch(batch_id=batch.pk) == 0  # a repeated message changes nothing

    batch.refresh_from_db()
    assert batch.status == Batch.Status.RUNNING
    dispatched = list(batch.items.filter(run__isnull=False).values_list("key", "run__status"))
    assert dispatched == [("k-A", "queued"), ("k-B", "queued")]
    run = Run.objects.get(batch_item__key="k-A")
    assert run.metadata == {"batch": str(batch.pk), "batch_item": "k-A"}
    assert run.variables == {"name": "A"}

    Run.objects.filter(pk=run.pk).update(status=Run.Status.SUCCEEDED)
    assert batch_services.batch_dispatch(batch_id=batch.pk) == 1
    assert batch.items.get(key="k-C").run is not None
    assert batch_selectors.batch_progress(batch)["counts"] == {
        "pending": 2,
        "queued": 2,
        "running": 0,
        "succeeded": 1,
        "failed": 0,
        "canceled": 0,
    }


def test_an_item_refused_at_dispatch_records_its_error_and_counts_as_failed(alice, version):
    batch, _ = _create(alice, version, _items("A", "B"), concurrency=1)
    Provider.objects.filter(name="testllm").update(enabled=False)

    assert batch_services.batch_dispatch(batch_id=batch.pk) == 0

    items = list(batch.items.order_by("line"))
    assert [(i.error_code, i.run_id, i.status) for i in items] == [
        ("provider_disabled", None, "failed"),
        ("provider_disabled", None, "failed"),
    ]
    batch.refresh_from_db()
    assert batch.status == Batch.Status.COMPLETED  # every item finished, even though all failed
    assert batch_selectors.batch_progress(batch)["counts"]["failed"] == 2
    assert Run.objects.count() == 0


def test_a_long_run_of_refused_items_is_dispatched_in_bounded_steps(alice, version, monkeypatch):
    batch, _ = _create(alice, version, _items("A", "B", "C", "D", "E"), concurrency=1)
    Provider.objects.filter(name="testllm").update(enabled=False)
    monkeypatch.setattr(batch_services, "DISPATCH_SCAN_LIMIT", 2)
    monkeypatch.setattr(batch_services, "_send_dispatch", lambda batch_id, delay_ms=None: None)

    steps = 0
    while batch.status != Batch.Status.COMPLETED:
        batch_services.batch_dispatch(batch_id=batch.pk)  # each stopped at the limit, asking for another call
        batch.refresh_from_db()
        steps += 1
        assert steps < 10

    assert steps == 3  # 2 + 2 + 1 items examined
    assert batch_selectors.batch_progress(batch)["counts"]["failed"] == 5


def test_a_batch_run_canceled_on_its_own_dispatches_the_batch_again(
    alice_client, alice, version, monkeypatch, django_capture_on_commit_callbacks
):
    batch, _ = _create(alice, version, _items("A", "B"), concurrency=1)
    batch_services.batch_dispatch(batch_id=batch.pk)
    run = Run.objects.get(batch_item__batch=batch)
    sent = []
    monkeypatch.setattr(dispatch_batch, "send_with_options", lambda args, delay=None: sent.append(args))

    with django_capture_on_commit_callbacks(execute=True):
        assert alice_client.post(f"/api/v1/runs/{run.pk}/cancel").status_code == 200

    assert sent == [(str(batch.pk),)]  # sent by runs.services.run_finish, whatever ended the run
    assert batch_services.batch_dispatch(batch_id=batch.pk) == 1
    assert batch_selectors.batch_progress(batch)["counts"] == {
        "pending": 0,
        "queued": 1,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "canceled": 1,
    }


def test_recovery_dispatches_unfinished_batches_again(alice, version, monkeypatch):
    active, _ = _create(alice, version, _items("A"))
    done, _ = _create(alice, version, _items("B"))
    batch_services.batch_cancel(batch=done)
    sent = []
    monkeypatch.setattr(batch_services, "_send_dispatch", lambda batch_id, delay_ms=None: sent.append(batch_id))

    assert batch_services.batches_recover() == 1
    assert sent == [active.pk]


def test_a_429_at_dispatch_stops_and_tries_again_later(alice, version, monkeypatch, django_capture_on_commit_callbacks):
    batch, _ = _create(alice, version, _items("A", "B", "C"), concurrency=3)
    real_create = run_services.run_create
    calls = []

    class TokensPerMinute(DomainError):
        status_code = HTTPStatus.TOO_MANY_REQUESTS

    def limited(**kwargs):
        calls.append(kwargs["variables"]["name"])
        if len(calls) == 2:
            raise TokensPerMinute("Token rate limit.", code="rate_limited", retry_after=7)
        return real_create(**kwargs)

    monkeypatch.setattr(run_services, "run_create", limited)
    sent = []
    monkeypatch.setattr(
        batch_services, "_send_dispatch", lambda batch_id, delay_ms=None: sent.append((batch_id, delay_ms))
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert batch_services.batch_dispatch(batch_id=batch.pk) == 1

    assert calls == ["A", "B"]  # stopped at the 429
    assert sent == [(batch.pk, 7000)]
    assert list(batch.items.order_by("line").values_list("key", "error_code")) == [
        ("k-A", ""),
        ("k-B", ""),  # not refused: still pending
        ("k-C", ""),
    ]
    assert batch_selectors.batch_progress(batch)["counts"]["pending"] == 2


def test_the_keys_tokens_per_minute_limit_pauses_dispatch(
    alice, version, monkeypatch, django_capture_on_commit_callbacks
):

    key, _ = account_services.api_key_create(project=alice.personal_project, created_by=alice, name="batch key")
    key.tokens_per_minute = 10
    key.save()
    batch, _ = batch_services.batch_create(
        project=alice.personal_project,
        created_by=alice,
        api_key=key,
        prompt="greet",
        items=batch_files.rows_from_items(_items("A", "B")),
    )
    ratelimit.token_usage_record(api_key=key, tokens=10)  # this minute's tokens are used up
    sent = []
    monkeypatch.setattr(batch_services, "_send_dispatch", lambda batch_id, delay_ms=None: sent.append(delay_ms))

    with django_capture_on_commit_callbacks(execute=True):
        assert batch_services.batch_dispatch(batch_id=batch.pk) == 0

    assert len(sent) == 1 and 0 < sent[0] <= 60_000  # until the minute ends
    assert batch_selectors.batch_progress(batch)["counts"]["pending"] == 2
    assert not batch.items.exclude(error_code="").exists()


def test_cancel_cancels_pending_items_and_queued_runs(alice_client, alice, version):
    batch, _ = _create(alice, version, _items("A", "B", "C"), concurrency=2)
    batch_services.batch_dispatch(batch_id=batch.pk)

    response = alice_client.post(f"{URL}/{batch.pk}/cancel")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "canceled" and body["finished_at"]
    assert body["counts"] == {"pending": 0, "queued": 0, "running": 0, "succeeded": 0, "failed": 0, "canceled": 3}
    assert set(Run.objects.filter(batch_item__batch=batch).values_list("status", flat=True)) == {"canceled"}
    assert batch.items.get(key="k-C").error_code == "canceled"
    assert batch_services.batch_dispatch(batch_id=batch.pk) == 0  # a canceled batch dispatches nothing

    again = alice_client.post(f"{URL}/{batch.pk}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "not_cancelable"


# --- API reads and access --------------------------------------------------------------------------


def test_batches_are_owner_scoped(alice_client, bob_client, alice, version):
    batch, _ = _create(alice, version, _items("A"))

    assert alice_client.get(URL).json()["count"] == 1
    assert bob_client.get(URL).json()["count"] == 0
    for path in (f"{URL}/{batch.pk}", f"{URL}/{batch.pk}/results", f"{URL}/{batch.pk}/results?format=csv"):
        response = bob_client.get(path)
        assert response.status_code == 404, path
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "not_found"
    assert bob_client.post(f"{URL}/{batch.pk}/cancel").status_code == 404
    assert alice_client.get(f"{URL}/not-a-uuid").status_code == 404
    batch.refresh_from_db()
    assert batch.status == Batch.Status.QUEUED


def test_scopes(alice, version):
    from rest_framework.test import APIClient

    _, plaintext = account_services.api_key_create(
        project=alice.personal_project, created_by=alice, name="reader", scopes=["runs:read"]
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    batch, _ = _create(alice, version, _items("A"))

    assert client.get(URL).status_code == 200
    assert client.get(f"{URL}/{batch.pk}").status_code == 200
    assert client.get(f"{URL}/{batch.pk}/results").status_code == 200
    assert client.post(URL, {"prompt": "greet", "items": _items("B")}, format="json").status_code == 403
    assert client.post(f"{URL}/{batch.pk}/cancel").status_code == 403
    assert Batch.objects.count() == 1


def test_list_filters_by_status(alice_client, alice, version):
    first, _ = _create(alice, version, _items("A"))
    second, _ = _create(alice, version, _items("B"))
    batch_services.batch_cancel(batch=second)

    assert [b["id"] for b in alice_client.get(URL).json()["results"]] == [str(second.pk), str(first.pk)]
    assert [b["id"] for b in alice_client.get(URL, {"status": "canceled"}).json()["results"]] == [str(second.pk)]
    assert alice_client.get(URL, {"status": "bogus"}).status_code == 400


def test_admin_lists_batches_with_progress_and_shows_items(admin_client, alice, version):
    batch, _ = _create(alice, version, _items("A", "B"), name="nightly")

    listing = admin_client.get("/admin/runs/batch/")
    page = admin_client.get(f"/admin/runs/batch/{batch.pk}/change/")

    assert listing.status_code == 200
    assert b"nightly" in listing.content and b"In flight" in listing.content
    assert page.status_code == 200
    assert b"k-A" in page.content and b"k-B" in page.content
    assert admin_client.get("/admin/runs/batch/add/").status_code == 403


# --- on a real worker ------------------------------------------------------------------------------


def test_a_batch_runs_every_item_then_completes_with_progress_tokens_and_cost(
    alice_client, alice, version, openai_server, worker
):
    ModelPrice.objects.create(
        provider="",
        model="test-*",
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
        effective_from="2020-01-01",
    )
    endpoint = WebhookEndpoint.objects.create(
        project=alice.personal_project, url="http://127.0.0.1:9/hook", events=["batch.completed"], secret="whsec_test"
    )

    response = alice_client.post(
        URL, {"prompt": "greet", "items": _items("Ada", "Bob", "Cy", "Di"), "concurrency": 2}, format="json"
    )
    assert response.status_code == 201, response.json()
    batch = _wait_for_batch(response.json()["id"])

    assert batch.status == Batch.Status.COMPLETED and batch.finished_at is not None
    runs = list(Run.objects.filter(batch_item__batch=batch))
    assert len(runs) == 4 and {r.status for r in runs} == {"succeeded"}
    assert len(openai_server.chat_requests()) == 4
    body = alice_client.get(f"{URL}/{batch.pk}").json()
    assert body["status"] == "completed"
    assert body["counts"] == {"pending": 0, "queued": 0, "running": 0, "succeeded": 4, "failed": 0, "canceled": 0}
    tokens = sum(r.total_tokens for r in runs)
    assert body["usage"] == {"total_tokens": tokens}
    total = sum(CostLog.objects.filter(run__batch_item__batch=batch).values_list("total_cost", flat=True))
    assert Decimal(body["cost"]["amount"]) == total > 0
    assert body["cost"]["unknown_cost_runs"] == 0
    delivery = WebhookDelivery.objects.get(endpoint=endpoint, event="batch.completed")
    assert delivery.payload["batch_id"] == str(batch.pk)
    assert delivery.payload["counts"]["succeeded"] == 4


def test_failed_runs_still_complete_the_batch(alice, version, openai_server, worker):
    openai_server.enqueue(error(400, '{"error": {"message": "no"}}'))
    batch, _ = _create(alice, version, _items("A", "B", "C"), concurrency=1)

    batch = _wait_for_batch(batch.pk)

    assert batch.status == Batch.Status.COMPLETED
    counts = batch_selectors.batch_progress(batch)["counts"]
    assert (counts["succeeded"], counts["failed"]) == (2, 1)
    assert batch.items.get(key="k-A").run.error_code == "bad_request"


def _sample_in_flight(batch_id, stop, samples):
    # Each sampling thread has its own connection.
    try:
        while not stop.is_set():
            samples.append(Run.objects.filter(batch_item__batch_id=batch_id, status__in=["queued", "running"]).count())
            time.sleep(0.02)
    finally:
        connection.close()


def _run_sampled(owner, version, openai_server, *, items, concurrency, delay):
    openai_server.enqueue(*[slow(delay, f"answer {i}") for i in range(items)])
    batch, _ = _create(owner, version, _items(*[f"n{i}" for i in range(items)]), concurrency=concurrency)
    stop, samples = threading.Event(), []
    sampler = threading.Thread(target=_sample_in_flight, args=(batch.pk, stop, samples))
    sampler.start()
    try:
        batch = _wait_for_batch(batch.pk, timeout=60)
    finally:
        stop.set()
        sampler.join()
    return batch, samples


def test_never_more_than_concurrency_runs_in_flight(alice, version, openai_server, worker):
    # The worker has 2 threads: with a limit of 1, a second run may never be queued or running.
    batch, samples = _run_sampled(alice, version, openai_server, items=5, concurrency=1, delay=0.2)

    assert batch.status == Batch.Status.COMPLETED
    assert batch_selectors.batch_progress(batch)["counts"]["succeeded"] == 5
    assert max(samples) == 1
    assert len(samples) > 20


def test_the_limit_is_reached_but_never_exceeded_with_more_worker_threads(alice, version, openai_server, worker):
    broker = dramatiq.get_broker()
    if not isinstance(broker, StubBroker):
        pytest.skip("an extra in-process worker needs the in-process broker")
    extra = dramatiq.Worker(broker, worker_threads=6, worker_timeout=50)
    extra.start()
    try:
        batch, samples = _run_sampled(alice, version, openai_server, items=12, concurrency=3, delay=0.3)
    finally:
        extra.stop()

    assert batch_selectors.batch_progress(batch)["counts"]["succeeded"] == 12
    assert max(samples) == 3


def test_results_export_as_jsonl_and_csv(alice_client, alice, version, openai_server, worker):
    # A free model: its charge is a zero with ten decimal places, which str() prints as 0E-10.
    ModelPrice.objects.create(
        provider="", model="test-*", input_per_mtok=0, output_per_mtok=0, effective_from="2020-01-01"
    )
    openai_server.enqueue(error(400, '{"error": {"message": "no"}}'))
    batch, _ = _create(alice, version, _items("Ada", "Bob"), concurrency=1)
    _wait_for_batch(batch.pk)

    jsonl = alice_client.get(f"{URL}/{batch.pk}/results")
    as_csv = alice_client.get(f"{URL}/{batch.pk}/results", {"format": "csv"})

    assert jsonl.status_code == 200 and jsonl.streaming
    assert jsonl["Content-Type"] == "application/x-ndjson"
    assert jsonl["Content-Disposition"] == f'attachment; filename="batch-{batch.pk}.jsonl"'
    rows = [json.loads(line) for line in _lines(jsonl).splitlines()]
    assert [(r["key"], r["line"], r["status"]) for r in rows] == [("k-Ada", 0, "failed"), ("k-Bob", 1, "succeeded")]
    failed, succeeded = rows
    assert failed["error"]["code"] == "bad_request" and failed["run"]["output"] == ""
    assert succeeded["variables"] == {"name": "Bob"}
    # The run in its public shape: what GET /api/v1/runs/{id} answers for it.
    run_id = batch.items.get(key="k-Bob").run_id
    assert succeeded["run"] == alice_client.get(f"/api/v1/runs/{run_id}").json() | {"url": f"/api/v1/runs/{run_id}"}
    assert succeeded["run"]["output"] == "Hello from the test server."
    assert succeeded["run"]["usage"]["total_tokens"] > 0 and succeeded["run"]["latency_ms"] is not None

    assert as_csv.status_code == 200 and as_csv.streaming
    assert as_csv["Content-Type"] == "text/csv; charset=utf-8"
    table = list(csv.DictReader(io.StringIO(_lines(as_csv))))
    assert [(r["key"], r["status"], r["error_code"]) for r in table] == [
        ("k-Ada", "failed", "bad_request"),
        ("k-Bob", "succeeded", ""),
    ]
    assert json.loads(table[1]["variables"]) == {"name": "Bob"}
    assert table[1]["output"] == "Hello from the test server."
    assert int(table[1]["total_tokens"]) == succeeded["run"]["usage"]["total_tokens"]
    assert table[1]["run_id"] == str(run_id)
    assert table[1]["cost"] == "0.00"  # money as money, not 0E-10

    assert alice_client.get(f"{URL}/{batch.pk}/results", {"format": "xml"}).status_code == 404


def test_cancel_while_running_lets_running_runs_finish(alice_client, alice, version, openai_server, worker):
    # Slow enough that the cancel lands while the first two still run, on a loaded machine too.
    openai_server.enqueue(*[slow(2.0) for _ in range(6)])
    batch, _ = _create(alice, version, _items(*"ABCDEF"), concurrency=2)
    deadline = time.monotonic() + 10
    while not Run.objects.filter(batch_item__batch=batch, status="running").exists():
        assert time.monotonic() < deadline, "no run started"
        time.sleep(0.02)

    response = alice_client.post(f"{URL}/{batch.pk}/cancel")
    assert response.status_code == 200
    drain(settle=1.0)

    batch.refresh_from_db()
    assert batch.status == Batch.Status.CANCELED
    counts = batch_selectors.batch_progress(batch)["counts"]
    assert counts["pending"] == counts["queued"] == counts["running"] == 0
    assert counts["succeeded"] >= 1 and counts["canceled"] >= 4
    assert counts["succeeded"] + counts["canceled"] == 6
    assert len(openai_server.chat_requests()) == counts["succeeded"]
