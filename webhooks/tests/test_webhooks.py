"""Webhooks: registration (URL checks, the secret shown once), emitting events, and delivery by the real
actor on a real worker to a real HTTP receiver that verifies every signature with the README's own code.

The receiver listens on 127.0.0.1, so these tests allow private addresses (WEBHOOKS_ALLOW_PRIVATE)
except where they test the refusal. On the embedded default the worker runs in threads of this process
and sees the `settings` fixture. On the Redis pass (CI's second pass) the `worker` fixture
(runs/tests/worker.py) runs `manage.py rundramatiq` as a subprocess, once per session, with this
process's os.environ: it reads its settings from there, so this module puts WORKER_ENV into os.environ
at import time, before any test starts that worker.
"""

import importlib
import json
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from dramatiq.brokers.stub import StubBroker

from billing.models import ModelPrice
from prompts import services as prompt_services
from prompts.tests.factories import prompt_with_version
from providers.models import Provider
from providers.tests.openai_server import OpenAIServer, answer, error
from runs import services as run_services
from runs.events import OUTPUT_LIMIT, run_event_emit
from runs.models import Run
from runs.tests.worker import drain, wait_for_run
from webhooks import secrets as webhook_secrets
from webhooks import services as webhook_services
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.tasks import deliver_webhook

WORKER_ENV = {
    "WEBHOOKS_ALLOW_PRIVATE": "true",
    "WEBHOOK_MAX_ATTEMPTS": "3",
    "WEBHOOK_RETRY_BASE_BACKOFF_S": "0.05",
    "WEBHOOK_RETRY_MAX_BACKOFF_S": "0.2",
    "WEBHOOK_TIMEOUT_S": "2",
}
if not isinstance(dramatiq.get_broker(), StubBroker):
    os.environ.update(WORKER_ENV)

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET_ON_PAGE = re.compile(r'<code id="webhook-secret"[^>]*>([^<]+)</code>')
PUBLIC_IP = "93.184.216.34"


def _readme_verify() -> Any:
    """`verify_webhook` from the README's Python snippet: the tests verify exactly what receivers are told to."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    [snippet] = [block for block in blocks if "def verify_webhook(" in block]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)  # noqa: S102 (our own README)
    return namespace["verify_webhook"]


verify_webhook = _readme_verify()


@pytest.fixture(autouse=True)
def webhook_settings(settings: Any) -> Any:
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    settings.WEBHOOK_MAX_ATTEMPTS = int(WORKER_ENV["WEBHOOK_MAX_ATTEMPTS"])
    settings.WEBHOOK_RETRY_BASE_BACKOFF_S = float(WORKER_ENV["WEBHOOK_RETRY_BASE_BACKOFF_S"])
    settings.WEBHOOK_RETRY_MAX_BACKOFF_S = float(WORKER_ENV["WEBHOOK_RETRY_MAX_BACKOFF_S"])
    settings.WEBHOOK_TIMEOUT_S = float(WORKER_ENV["WEBHOOK_TIMEOUT_S"])
    return settings


# --- a real receiver -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-cased names
    raw: bytes
    body: Any
    verified: bool


class Receiver:
    """A webhook receiver on 127.0.0.1. It answers the scripted statuses in turn, then 200, and checks each
    request's signature with the README's verify_webhook and the endpoint's secret."""

    def __init__(self) -> None:
        self.secret = ""
        self.statuses: deque[int] = deque()
        self._received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                verified = verify_webhook(
                    receiver.secret,
                    raw,
                    self.headers.get("X-Webhook-Timestamp", ""),
                    self.headers.get("X-Signature", ""),
                )
                with receiver._lock:
                    receiver._received.append(
                        Received(
                            path=self.path,
                            headers={name.lower(): value for name, value in self.headers.items()},
                            raw=raw,
                            body=json.loads(raw) if raw else None,
                            verified=verified,
                        )
                    )
                    status = receiver.statuses.popleft() if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="webhook-receiver", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/llmops"

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def start(self) -> "Receiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names resolved to chosen addresses (change the dict to change DNS; [] does not resolve); other names
    resolve for real."""
    records: dict[str, list[str]] = {}
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in records:
            return real_getaddrinfo(host, port, *args, **kwargs)
        if not records[name]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in address else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (address, int(port or 0)),
            )
            for address in records[name]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return records


def _endpoint(owner: Any, receiver: Receiver, events: list[str], **fields: Any) -> WebhookEndpoint:
    endpoint, secret = webhook_services.webhook_endpoint_create(
        project=owner.personal_project, created_by=owner, url=receiver.url, events=events, **fields
    )
    receiver.secret = secret
    return endpoint


def wait_for_delivery(
    delivery_id: Any, *, until: tuple[str, ...] = ("succeeded", "failed"), timeout: float = 20.0
) -> WebhookDelivery:
    deadline = time.monotonic() + timeout
    while True:
        delivery = WebhookDelivery.objects.get(pk=delivery_id)
        if delivery.status in until:
            return delivery
        if time.monotonic() > deadline:
            raise AssertionError(f"delivery {delivery_id} still {delivery.status} after {timeout}s")
        time.sleep(0.05)


def _emit(owner: Any, event: str = "prompt.version_created", payload: dict[str, Any] | None = None) -> WebhookDelivery:
    with transaction.atomic():
        [delivery] = webhook_services.webhook_emit(
            project=owner.personal_project, event=event, payload=payload or {"n": 1}
        )
    return delivery


# --- delivery on a real worker ---------------------------------------------------------------------


def test_a_new_prompt_version_is_delivered_signed_and_verifies(alice, receiver, worker):
    endpoint = _endpoint(alice, receiver, ["prompt.version_created"])

    prompt, version = prompt_with_version(alice, name="greet", model="local/smollm2")
    delivery = wait_for_delivery(WebhookDelivery.objects.get(endpoint=endpoint).pk)

    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert delivery.attempts == 1
    assert delivery.last_response_code == 200
    assert delivery.last_error == ""
    assert delivery.delivered_at is not None
    [request] = receiver.received
    assert request.verified
    assert request.path == "/hooks/llmops"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-webhook-id"] == str(delivery.pk)
    assert request.headers["x-webhook-event"] == "prompt.version_created"
    assert abs(int(request.headers["x-webhook-timestamp"]) - time.time()) < 30
    assert request.body == {
        "id": str(delivery.pk),
        "event": "prompt.version_created",
        "project": {"id": str(alice.personal_project.pk), "slug": "alice"},
        "created_at": delivery.created_at.isoformat(),
        "data": {
            "prompt": {"id": str(prompt.pk), "name": "greet"},
            "version": 1,
            "version_id": str(version.pk),
            "model": "local/smollm2",
        },
    }
    # The signature covers the timestamp and every byte of the body, under this endpoint's secret only.
    timestamp, signature = request.headers["x-webhook-timestamp"], request.headers["x-signature"]
    assert signature.startswith("sha256=")
    assert not verify_webhook(receiver.secret, request.raw + b" ", timestamp, signature)
    assert not verify_webhook(receiver.secret, request.raw, str(int(timestamp) + 1), signature)
    assert not verify_webhook("whsec_another", request.raw, timestamp, signature)


def test_readme_verification_rejects_a_correctly_signed_but_old_request(alice):
    body = b'{"id":"x"}'
    old = str(int(time.time()) - 301)
    fresh = str(int(time.time()))

    assert not verify_webhook(
        "whsec_s", body, old, webhook_services.signature(secret="whsec_s", timestamp=int(old), body=body)
    )
    assert verify_webhook(
        "whsec_s", body, fresh, webhook_services.signature(secret="whsec_s", timestamp=int(fresh), body=body)
    )


def test_receiver_errors_are_retried_with_the_same_id_until_success(alice, receiver, worker):
    _endpoint(alice, receiver, ["prompt.version_created"])
    receiver.statuses.extend([500, 503])

    delivery = wait_for_delivery(_emit(alice).pk)

    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert delivery.attempts == 3
    assert delivery.last_response_code == 200
    assert delivery.last_error == ""
    assert delivery.next_attempt_at is None
    requests = receiver.received
    assert len(requests) == 3
    assert {r.headers["x-webhook-id"] for r in requests} == {str(delivery.pk)}
    assert all(r.verified for r in requests)


def test_gives_up_after_max_attempts(alice, receiver, worker):
    _endpoint(alice, receiver, ["prompt.version_created"])
    receiver.statuses.extend([500] * 10)

    delivery = wait_for_delivery(_emit(alice).pk)
    drain(settle=0.5)

    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.attempts == 3
    assert delivery.last_response_code == 500
    assert delivery.last_error == "The endpoint answered HTTP 500."
    assert delivery.delivered_at is None
    assert delivery.next_attempt_at is None
    assert len(receiver.received) == 3


def test_connection_errors_are_retried_and_recorded(alice, worker, settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    webhook_services.webhook_endpoint_create(
        project=alice.personal_project,
        created_by=alice,
        url=f"http://127.0.0.1:{closed_port}/hook",
        events=["prompt.version_created"],
    )

    delivery = wait_for_delivery(_emit(alice).pk)

    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.attempts == 3
    assert delivery.last_response_code is None
    assert delivery.last_error == "Connection failed (ConnectError)."


def test_a_succeeded_delivery_is_never_sent_again(alice, receiver, worker):
    _endpoint(alice, receiver, ["prompt.version_created"])
    delivery = wait_for_delivery(_emit(alice).pk)
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED

    deliver_webhook.send(str(delivery.pk))
    drain()
    webhook_services.webhook_deliver(delivery_id=str(delivery.pk))

    assert len(receiver.received) == 1
    assert WebhookDelivery.objects.get(pk=delivery.pk).attempts == 1


def test_a_duplicate_message_for_an_attempt_in_flight_sends_nothing(alice, receiver):
    endpoint = _endpoint(alice, receiver, ["prompt.version_created"])
    with transaction.atomic():  # written with no message, as if another worker had just claimed it
        delivery = WebhookDelivery.objects.create(endpoint=endpoint, event="prompt.version_created", payload={})
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        attempts=1, next_attempt_at=delivery.created_at + webhook_services.attempt_time_limit()
    )

    webhook_services.webhook_deliver(delivery_id=str(delivery.pk))

    assert receiver.received == []
    assert WebhookDelivery.objects.get(pk=delivery.pk).attempts == 1


def test_deliver_webhook_actor_is_declared_to_do_its_own_retries():
    assert deliver_webhook.queue_name == "webhooks"
    assert deliver_webhook.options["max_retries"] == 0
    # Longer than connecting plus answering within WEBHOOK_TIMEOUT_S (10 s by default).
    assert deliver_webhook.options["time_limit"] >= 20_000


def test_backoff_grows_exponentially_with_jitter_and_a_cap(settings):
    settings.WEBHOOK_RETRY_BASE_BACKOFF_S = 1.0
    settings.WEBHOOK_RETRY_MAX_BACKOFF_S = 8.0

    for _ in range(50):
        assert 0.5 <= webhook_services.backoff_s(1) <= 1.0
        assert 2.0 <= webhook_services.backoff_s(3) <= 4.0
        assert 4.0 <= webhook_services.backoff_s(10) <= 8.0


# --- runs emit run.succeeded / run.failed ----------------------------------------------------------


@pytest.fixture
def provider_server() -> Iterator[OpenAIServer]:
    server = OpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def run_version(alice, provider_server):
    Provider.objects.create(
        name="testllm", kind=Provider.Kind.OPENAI_COMPATIBLE, base_url=provider_server.url, timeout=5.0
    )
    _, version = prompt_with_version(alice, name="greeter", model="testllm/test-model")
    return version


def _run(alice, version) -> Run:
    run, _ = run_services.run_create(
        project=alice.personal_project,
        created_by=alice,
        api_key=None,
        prompt=str(version.prompt_id),
        version=version.number,
        variables={"name": "Ada"},
    )
    return run


def test_a_run_success_is_delivered_in_the_runs_public_shape(
    alice, alice_client, receiver, worker, run_version, provider_server
):
    ModelPrice.objects.create(
        provider="",
        model="test-*",
        input_per_mtok=Decimal("3"),
        output_per_mtok=Decimal("15"),
        effective_from="2020-01-01",
    )
    endpoint = _endpoint(alice, receiver, ["run.succeeded", "run.failed"])
    provider_server.enqueue(answer("Hi Ada."))

    run = wait_for_run(_run(alice, run_version).pk)
    delivery = wait_for_delivery(WebhookDelivery.objects.get(endpoint=endpoint).pk)

    assert run.status == Run.Status.SUCCEEDED
    assert delivery.event == "run.succeeded"
    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    [request] = receiver.received
    assert request.verified
    data = request.body["data"]
    # The run's public shape, the API's own (runs.serializers.RunSerializer), plus output_truncated.
    api = alice_client.get(f"/api/v1/runs/{run.pk}").json()
    assert {k: v for k, v in data.items() if k not in ("url", "output_truncated")} == {
        k: v for k, v in api.items() if k != "url"
    }
    assert data["url"] == f"/api/v1/runs/{run.pk}"
    assert (data["id"], data["status"], data["prompt_name"], data["version"]) == (
        str(run.pk),
        "succeeded",
        "greeter",
        1,
    )
    assert (data["provider"], data["model"], data["output"], data["output_truncated"]) == (
        "testllm",
        "test-model",
        "Hi Ada.",
        False,
    )
    expected_cost = (Decimal("3") * run.prompt_tokens + Decimal("15") * run.completion_tokens) / 1_000_000
    assert Decimal(data["cost"]["amount"]) == expected_cost
    assert data["cost"]["currency"] == "USD"
    assert data["error"] is None


def test_a_run_failure_is_delivered_with_its_error(alice, receiver, worker, run_version, provider_server):
    endpoint = _endpoint(alice, receiver, ["run.failed"])
    provider_server.enqueue(error(400, json.dumps({"error": {"message": "Bad request."}})))

    run = wait_for_run(_run(alice, run_version).pk)
    delivery = wait_for_delivery(WebhookDelivery.objects.get(endpoint=endpoint).pk)

    assert run.status == Run.Status.FAILED
    assert delivery.event == "run.failed"
    [request] = receiver.received
    assert request.verified
    assert request.body["data"]["error"] == {"code": run.error_code, "message": run.error_message}
    assert request.body["data"]["cost"] is None
    assert request.body["data"]["output"] == ""


def _finished_run(owner, version, **fields) -> Run:
    values = {"rendered_input": [{"role": "user", "content": "x"}], "provider": "testllm", "model": "m"}
    return Run.objects.create(project=owner.personal_project, prompt_version=version, **{**values, **fields})


def test_run_events_truncate_long_output_and_are_emitted_once_per_run(
    alice, receiver, django_capture_on_commit_callbacks
):
    endpoint = _endpoint(alice, receiver, ["run.succeeded", "run.failed"])
    _, version = prompt_with_version(alice)
    queued = _finished_run(alice, version)
    succeeded = _finished_run(alice, version, status=Run.Status.SUCCEEDED, output="x" * (OUTPUT_LIMIT + 10))

    with django_capture_on_commit_callbacks() as callbacks:
        run_event_emit(run=queued)
        run_event_emit(run=succeeded)
        run_event_emit(run=succeeded)  # a redelivered message finishing the same run

    [delivery] = WebhookDelivery.objects.filter(endpoint=endpoint)
    assert len(callbacks) == 1
    assert delivery.event == "run.succeeded"
    assert delivery.payload["output"] == "x" * OUTPUT_LIMIT
    assert delivery.payload["output_truncated"] is True


# --- what is emitted to whom -----------------------------------------------------------------------


def test_only_active_subscribed_endpoints_of_the_owner_get_a_delivery(alice, bob, receiver):
    subscribed = _endpoint(alice, receiver, ["prompt.version_created"])
    inactive = _endpoint(alice, receiver, ["prompt.version_created"])
    webhook_services.webhook_endpoint_update(endpoint=inactive, is_active=False)
    _endpoint(alice, receiver, ["prompt.label_moved"])
    _endpoint(bob, receiver, ["prompt.version_created"])

    deliveries = webhook_services.webhook_emit(
        project=alice.personal_project, event="prompt.version_created", payload={"a": 1}
    )

    assert [d.endpoint_id for d in deliveries] == [subscribed.pk]
    assert WebhookDelivery.objects.count() == 1
    with pytest.raises(ValueError):
        webhook_services.webhook_emit(project=alice.personal_project, event="prompt.deleted", payload={})


def test_a_dedupe_key_makes_a_second_emit_a_no_op(alice, receiver):
    _endpoint(alice, receiver, ["batch.completed"])

    first = webhook_services.webhook_emit(
        project=alice.personal_project, event="batch.completed", payload={"batch_id": "b1"}, dedupe_key="b1"
    )
    second = webhook_services.webhook_emit(
        project=alice.personal_project, event="batch.completed", payload={"batch_id": "b1"}, dedupe_key="b1"
    )

    assert len(first) == 1
    assert second == []
    assert WebhookDelivery.objects.count() == 1


def test_label_moved_is_emitted_only_when_the_label_really_moves(alice, receiver, django_capture_on_commit_callbacks):
    endpoint = _endpoint(alice, receiver, ["prompt.label_moved"])
    prompt, _ = prompt_with_version(alice, name="faq")
    prompt_services.prompt_version_create(prompt=prompt, created_by=alice, model="local/smollm2", template="v2")

    with django_capture_on_commit_callbacks() as callbacks:
        prompt_services.label_move(prompt=prompt, label="production", version_number=1, moved_by=alice)
        prompt_services.label_move(prompt=prompt, label="production", version_number=1, moved_by=alice)
        prompt_services.label_move(prompt=prompt, label="production", version_number=2, moved_by=alice)

    payloads = sorted((d.payload for d in WebhookDelivery.objects.filter(endpoint=endpoint)), key=lambda p: p["to"])
    by = {"id": str(alice.pk), "username": "alice"}  # who moved it
    assert payloads == [
        {"prompt": {"id": str(prompt.pk), "name": "faq"}, "label": "production", "from": None, "to": 1, "moved_by": by},
        {"prompt": {"id": str(prompt.pk), "name": "faq"}, "label": "production", "from": 1, "to": 2, "moved_by": by},
    ]
    # Each delivery is enqueued after its commit (the label's writes also invalidate the config cache).
    assert len([c for c in callbacks if getattr(c, "func", None) is webhook_services._enqueue]) == 2


def test_a_failed_emit_rolls_back_with_the_fact(alice, receiver):
    _endpoint(alice, receiver, ["prompt.version_created"])
    prompt, _ = prompt_with_version(alice, name="atomic")
    before = WebhookDelivery.objects.count()

    with pytest.raises(RuntimeError), transaction.atomic():
        prompt_services.prompt_version_create(prompt=prompt, created_by=alice, model="local/smollm2", template="v2")
        raise RuntimeError("the surrounding transaction fails")

    assert WebhookDelivery.objects.count() == before
    assert prompt.versions.count() == 1


# --- URL checks (SSRF) -----------------------------------------------------------------------------

REFUSED_URLS = [
    "http://127.0.0.1:8000/hook",
    "http://10.1.2.3/hook",
    "http://172.16.5.4/hook",
    "http://192.168.0.10/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/hook",
    "http://0.0.0.0/hook",
    "http://[::1]/hook",
    "http://[fe80::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://localhost:9000/hook",  # a real name that resolves to 127.0.0.1
    "http://loopback.example.test/hook",  # resolves to 127.0.0.1 (fake DNS)
    "http://mixed.example.test/hook",  # one public and one private address
    "http://nowhere.example.test/hook",  # does not resolve
    "ftp://hooks.example.test/hook",
    "file:///etc/passwd",
    "https://user:pass@hooks.example.test/hook",
    "not a url",
]


@pytest.fixture
def public_dns(fake_dns, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    fake_dns["hooks.example.test"] = [PUBLIC_IP]
    fake_dns["loopback.example.test"] = ["127.0.0.1"]
    fake_dns["mixed.example.test"] = [PUBLIC_IP, "10.0.0.7"]
    fake_dns["nowhere.example.test"] = []
    return fake_dns


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_registration_refuses_urls_that_are_not_public_http(alice_client, public_dns, url):
    response = alice_client.post("/api/v1/webhooks", {"url": url, "events": ["run.succeeded"]}, format="json")

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["fields"]) == ["url"]
    assert WebhookEndpoint.objects.count() == 0


def test_registration_accepts_a_public_host_and_a_patch_to_a_private_one_is_refused(alice_client, public_dns):
    created = alice_client.post(
        "/api/v1/webhooks", {"url": "https://hooks.example.test/in", "events": ["run.succeeded"]}, format="json"
    )
    assert created.status_code == 201, created.json()

    response = alice_client.patch(
        f"/api/v1/webhooks/{created.json()['id']}", {"url": "http://169.254.169.254/"}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["url"]
    assert WebhookEndpoint.objects.get().url == "https://hooks.example.test/in"


def test_delivery_is_refused_when_the_name_now_resolves_to_a_private_address(
    alice, receiver, fake_dns, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    fake_dns["rebind.example.test"] = [PUBLIC_IP]
    _, secret = webhook_services.webhook_endpoint_create(
        project=alice.personal_project,
        created_by=alice,
        url=f"http://rebind.example.test:{receiver.port}/hooks/llmops",
        events=["prompt.version_created"],
    )
    receiver.secret = secret
    with django_capture_on_commit_callbacks():
        [delivery] = webhook_services.webhook_emit(
            project=alice.personal_project, event="prompt.version_created", payload={}
        )
    fake_dns["rebind.example.test"] = ["127.0.0.1"]  # DNS rebinding: now the receiver on loopback

    webhook_services.webhook_deliver(delivery_id=str(delivery.pk))

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.attempts == 1
    assert delivery.last_error.startswith("Refused: The host resolves to a loopback, private")
    assert receiver.received == []
    # The same delivery with the address allowed reaches the receiver: the refusal above is what stopped it.
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="pending", attempts=0, next_attempt_at=None)
    webhook_services.webhook_deliver(delivery_id=str(delivery.pk))
    assert [r.verified for r in receiver.received] == [True]


def test_delivery_to_a_private_address_is_refused_once_private_addresses_are_disallowed(
    alice, receiver, settings, django_capture_on_commit_callbacks
):
    _endpoint(alice, receiver, ["prompt.version_created"])  # registered while allowed
    with django_capture_on_commit_callbacks():
        [delivery] = webhook_services.webhook_emit(
            project=alice.personal_project, event="prompt.version_created", payload={}
        )
    settings.WEBHOOKS_ALLOW_PRIVATE = False

    webhook_services.webhook_deliver(delivery_id=str(delivery.pk))

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.last_error.startswith("Refused:")
    assert receiver.received == []


def test_delivery_to_a_disabled_endpoint_is_not_sent(alice, receiver, django_capture_on_commit_callbacks):
    endpoint = _endpoint(alice, receiver, ["prompt.version_created"])
    with django_capture_on_commit_callbacks():
        [delivery] = webhook_services.webhook_emit(
            project=alice.personal_project, event="prompt.version_created", payload={}
        )
    webhook_services.webhook_endpoint_update(endpoint=endpoint, is_active=False)

    webhook_services.webhook_deliver(delivery_id=str(delivery.pk))

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.last_error == "The endpoint is disabled."
    assert receiver.received == []


# --- API -------------------------------------------------------------------------------------------


def _register(client, receiver, events=("prompt.version_created",)) -> dict[str, Any]:
    response = client.post(
        "/api/v1/webhooks", {"url": receiver.url, "events": list(events), "description": "ci"}, format="json"
    )
    assert response.status_code == 201, response.json()
    return response.json()


def test_the_secret_is_shown_only_in_the_create_response(alice, alice_client, receiver):
    created = alice_client.post(
        "/api/v1/webhooks",
        {"url": receiver.url, "events": ["prompt.label_moved", "prompt.version_created"]},
        format="json",
    )

    assert created.status_code == 201
    assert "no-store" in created["Cache-Control"]
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert body["events"] == ["prompt.version_created", "prompt.label_moved"]
    assert body["is_active"] is True
    assert webhook_secrets.secret_decrypt(WebhookEndpoint.objects.get(pk=body["id"]).secret) == secret
    for response in (
        alice_client.get("/api/v1/webhooks"),
        alice_client.get(f"/api/v1/webhooks/{body['id']}"),
        alice_client.patch(f"/api/v1/webhooks/{body['id']}", {"description": "renamed"}, format="json"),
        alice_client.get(f"/api/v1/webhooks/{body['id']}/deliveries"),
    ):
        assert response.status_code == 200
        assert secret not in response.content.decode()
        assert "secret" not in response.content.decode()


def test_an_api_registered_secret_signs_the_deliveries(alice, alice_client, receiver, worker):
    body = _register(alice_client, receiver)
    receiver.secret = body["secret"]

    prompt_with_version(alice, name="api-signed")
    delivery = wait_for_delivery(WebhookDelivery.objects.get(endpoint_id=body["id"]).pk)

    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert [r.verified for r in receiver.received] == [True]


def test_owners_see_and_change_only_their_own_endpoints(alice, bob, alice_client, bob_client, receiver):
    body = _register(alice_client, receiver)
    url = f"/api/v1/webhooks/{body['id']}"

    assert bob_client.get("/api/v1/webhooks").json()["count"] == 0
    for response in (
        bob_client.get(url),
        bob_client.patch(url, {"is_active": False}, format="json"),
        bob_client.patch(url, {"url": "not a url"}, format="json"),
        bob_client.delete(url),
        bob_client.get(f"{url}/deliveries"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    endpoint = WebhookEndpoint.objects.get(pk=body["id"])
    assert endpoint.is_active is True
    assert alice_client.get("/api/v1/webhooks").json()["count"] == 1
    assert alice_client.get("/api/v1/webhooks/00000000-0000-0000-0000-000000000000").status_code == 404
    # An endpoint always belongs to the caller; an `owner` in the body is ignored.
    bobs = bob_client.post(
        "/api/v1/webhooks", {"url": receiver.url, "events": ["run.failed"], "owner": str(alice.pk)}, format="json"
    )
    assert bobs.status_code == 201
    assert WebhookEndpoint.objects.get(pk=bobs.json()["id"]).created_by == bob
    assert alice_client.get("/api/v1/webhooks").json()["count"] == 1


def test_update_delete_and_the_delivery_log(alice, alice_client, receiver, django_capture_on_commit_callbacks):
    body = _register(alice_client, receiver)
    url = f"/api/v1/webhooks/{body['id']}"
    with django_capture_on_commit_callbacks():
        [delivery] = webhook_services.webhook_emit(
            project=alice.personal_project, event="prompt.version_created", payload={"k": "v"}
        )
    WebhookDelivery.objects.filter(pk=delivery.pk).update(attempts=2, last_response_code=502, last_error="HTTP 502")

    patched = alice_client.patch(url, {"events": ["run.failed"], "is_active": False}, format="json")
    log = alice_client.get(f"{url}/deliveries")

    assert patched.status_code == 200
    assert patched.json()["events"] == ["run.failed"]
    assert patched.json()["is_active"] is False
    assert log.status_code == 200
    [entry] = log.json()["results"]
    assert entry["id"] == str(delivery.pk)
    assert entry["event"] == "prompt.version_created"
    assert entry["status"] == "pending"
    assert entry["attempts"] == 2
    assert entry["last_response_code"] == 502
    assert entry["payload"] == {"k": "v"}
    assert alice_client.delete(url).status_code == 204
    assert not WebhookEndpoint.objects.filter(pk=body["id"]).exists()
    assert not WebhookDelivery.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"events": ["prompt.deleted"]}, "events.0"),
        ({"events": []}, "events"),
        ({"events": "run.failed"}, "events"),
        ({"url": ""}, "url"),
    ],
)
def test_create_validates_events_and_url(alice_client, receiver, payload, field):
    response = alice_client.post(
        "/api/v1/webhooks", {"url": receiver.url, "events": ["run.failed"], **payload}, format="json"
    )

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert WebhookEndpoint.objects.count() == 0


def test_anonymous_requests_are_refused(anon_client):
    assert anon_client.get("/api/v1/webhooks").status_code == 401


# --- admin -----------------------------------------------------------------------------------------

ADD_URL = "/admin/webhooks/webhookendpoint/add/"


def _admin_add(admin_client, owner, url, events=("run.succeeded",)):
    return admin_client.post(
        ADD_URL, {"project": str(owner.personal_project.pk), "url": url, "events": list(events), "description": ""}
    )


def test_admin_add_shows_the_secret_once_and_never_again(admin_client, alice, receiver):
    response = _admin_add(admin_client, alice, receiver.url)

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    match = SECRET_ON_PAGE.search(page)
    assert match is not None, page
    secret = match.group(1)
    endpoint = WebhookEndpoint.objects.get(project=alice.personal_project)
    assert webhook_secrets.secret_decrypt(endpoint.secret) == secret
    assert endpoint.events == ["run.succeeded"]
    assert page.count(secret) == 1
    for url in (
        "/admin/webhooks/webhookendpoint/",
        f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/",
        f"/admin/webhooks/webhookendpoint/{endpoint.pk}/history/",
    ):
        later = admin_client.get(url)
        assert later.status_code == 200
        assert secret not in later.content.decode()


def test_admin_refuses_a_private_url(admin_client, alice, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False

    response = _admin_add(admin_client, alice, "http://169.254.169.254/latest/meta-data/")

    assert response.status_code == 200  # the form again, with the error
    assert "only public addresses are allowed" in response.content.decode()
    assert WebhookEndpoint.objects.count() == 0


def test_admin_change_keeps_the_secret_and_rechecks_the_url(admin_client, alice, receiver):
    endpoint, secret = webhook_services.webhook_endpoint_create(
        project=alice.personal_project, created_by=alice, url=receiver.url, events=["run.failed"]
    )

    response = admin_client.post(
        f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/",
        {"url": receiver.url + "/v2", "events": ["run.failed", "batch.completed"], "description": "x"},
    )

    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.url == receiver.url + "/v2"
    assert endpoint.events == ["run.failed", "batch.completed"]
    assert endpoint.is_active is False  # an unticked checkbox
    assert webhook_secrets.secret_decrypt(endpoint.secret) == secret


def test_admin_delivery_log_is_read_only_with_filters(
    admin_client, alice, receiver, django_capture_on_commit_callbacks
):
    _endpoint(alice, receiver, ["run.failed"])
    with django_capture_on_commit_callbacks():
        [delivery] = webhook_services.webhook_emit(project=alice.personal_project, event="run.failed", payload={})
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed", attempts=5, last_response_code=503)

    changelist = admin_client.get("/admin/webhooks/webhookdelivery/?status__exact=failed&event__exact=run.failed")
    empty = admin_client.get("/admin/webhooks/webhookdelivery/?status__exact=succeeded")
    detail = admin_client.get(f"/admin/webhooks/webhookdelivery/{delivery.pk}/change/")

    assert changelist.status_code == 200
    assert changelist.context["cl"].result_count == 1
    assert "503" in changelist.content.decode()
    assert empty.context["cl"].result_count == 0
    assert detail.status_code == 200
    assert admin_client.get("/admin/webhooks/webhookdelivery/add/").status_code == 403
    assert admin_client.post(f"/admin/webhooks/webhookdelivery/{delivery.pk}/delete/").status_code == 403


# --- signing secrets at rest -----------------------------------------------------------------------


def _stored_secrets() -> list[str]:
    """The secret column exactly as the database holds it, past the ORM."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT secret FROM {WebhookEndpoint._meta.db_table}")  # noqa: S608 (a constant)
        return [row[0] for row in cursor.fetchall()]


def test_the_database_row_holds_the_secret_only_encrypted(alice, alice_client, admin_client, receiver):
    api_secret = _register(alice_client, receiver)["secret"]
    service_secret = webhook_services.webhook_endpoint_create(
        project=alice.personal_project, created_by=alice, url=receiver.url, events=["run.failed"]
    )[1]
    admin_page = _admin_add(admin_client, alice, receiver.url).content.decode()
    admin_secret = SECRET_ON_PAGE.search(admin_page).group(1)  # type: ignore[union-attr]

    stored = _stored_secrets()

    assert len(stored) == 3
    for secret in (api_secret, service_secret, admin_secret):
        assert secret.startswith("whsec_")
        assert not any(secret in value or secret.removeprefix("whsec_") in value for value in stored)
    assert all(value.startswith("gAAAAA") for value in stored)  # Fernet tokens
    assert sorted(webhook_secrets.secret_decrypt(value) for value in stored) == sorted(
        [api_secret, service_secret, admin_secret]
    )
    dump = StringIO()
    call_command("dumpdata", "webhooks.webhookendpoint", stdout=dump)
    assert not any(secret.removeprefix("whsec_") in dump.getvalue() for secret in (api_secret, admin_secret))


def test_the_secret_shown_at_creation_verifies_a_delivery_signed_from_the_encrypted_row(
    alice, alice_client, receiver, django_capture_on_commit_callbacks
):
    receiver.secret = _register(alice_client, receiver)["secret"]
    with django_capture_on_commit_callbacks():
        [delivery] = webhook_services.webhook_emit(
            project=alice.personal_project, event="prompt.version_created", payload={"n": 1}
        )

    webhook_services.webhook_deliver(delivery_id=str(delivery.pk))

    assert [r.verified for r in receiver.received] == [True]
    assert WebhookDelivery.objects.get(pk=delivery.pk).status == WebhookDelivery.Status.SUCCEEDED


def test_rotation_new_key_first_reencrypt_then_drop_the_old_key(
    alice, receiver, settings, django_capture_on_commit_callbacks
):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old_key]
    endpoint = _endpoint(alice, receiver, ["prompt.version_created"])
    # A row written before encryption existed (or by an old process during a rolling deploy).
    legacy = WebhookEndpoint.objects.create(
        project=alice.personal_project, url=receiver.url, events=["run.failed"], secret="whsec_legacy"
    )

    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    out = StringIO()
    call_command("webhook_secrets", "reencrypt", stdout=out)
    settings.FIELD_ENCRYPTION_KEYS = [new_key]

    assert "Re-encrypted the signing secrets of 2 webhook endpoint(s)" in out.getvalue()
    endpoint.refresh_from_db()
    legacy.refresh_from_db()
    assert Fernet(new_key.encode()).decrypt(endpoint.secret.encode()).decode() == receiver.secret
    assert webhook_secrets.secret_decrypt(legacy.secret) == "whsec_legacy"
    assert "whsec_legacy" not in _stored_secrets()
    with django_capture_on_commit_callbacks():
        [delivery] = webhook_services.webhook_emit(
            project=alice.personal_project, event="prompt.version_created", payload={}
        )
    webhook_services.webhook_deliver(delivery_id=str(delivery.pk))
    assert [r.verified for r in receiver.received] == [True]


def test_reencrypt_reports_secrets_no_key_decrypts_and_leaves_them(alice, receiver, settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    lost = _endpoint(alice, receiver, ["run.failed"])
    stored = WebhookEndpoint.objects.get(pk=lost.pk).secret
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(CommandError) as info:
        call_command("webhook_secrets", "reencrypt", stdout=StringIO())

    assert str(lost.pk) in str(info.value)
    assert receiver.secret not in str(info.value)
    assert WebhookEndpoint.objects.get(pk=lost.pk).secret == stored


def test_an_undecryptable_secret_is_a_recorded_retryable_error_not_a_crash(
    alice, receiver, settings, caplog, django_capture_on_commit_callbacks
):
    endpoint = _endpoint(alice, receiver, ["prompt.version_created"])  # under the key derived from SECRET_KEY
    stored = WebhookEndpoint.objects.get(pk=endpoint.pk).secret
    with django_capture_on_commit_callbacks():
        [delivery] = webhook_services.webhook_emit(
            project=alice.personal_project, event="prompt.version_created", payload={}
        )
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the old key was dropped too early

    with django_capture_on_commit_callbacks() as retries:
        webhook_services.webhook_deliver(delivery_id=str(delivery.pk))

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.attempts == 1
    assert "FIELD_ENCRYPTION_KEYS" in delivery.last_error
    assert delivery.next_attempt_at is not None
    assert len(retries) == 1  # the retry is scheduled like any failed attempt
    assert receiver.received == []
    [logged] = [r for r in caplog.records if r.getMessage() == "webhook signing secret cannot be decrypted"]
    assert logged.levelname == "ERROR"
    assert receiver.secret not in caplog.text and stored not in caplog.text
    # The key restored before the attempts run out: the same delivery goes through.
    settings.FIELD_ENCRYPTION_KEYS = []
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
    webhook_services.webhook_deliver(delivery_id=str(delivery.pk))
    assert [r.verified for r in receiver.received] == [True]


def test_a_malformed_key_is_named_by_position_not_printed(settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), "not-a-fernet-key"]

    with pytest.raises(ImproperlyConfigured) as info:
        webhook_secrets.secret_encrypt("whsec_x")

    assert "key 2" in str(info.value)
    assert "not-a-fernet-key" not in str(info.value)


def test_the_data_migration_encrypts_plaintext_rows_and_reverses_without_loss(alice, receiver):
    migration = importlib.import_module("accounts.migrations.0004_webhook_secret_encryption")
    # The models as that migration sees them (they lived in accounts then; same table).
    historical = MigrationExecutor(connection).loader.project_state(("accounts", "0004_webhook_secret_encryption")).apps
    plain = WebhookEndpoint.objects.create(
        project=alice.personal_project, url=receiver.url, events=["run.failed"], secret="whsec_old"
    )
    _, new_secret = webhook_services.webhook_endpoint_create(
        project=alice.personal_project, created_by=alice, url=receiver.url, events=["run.failed"]
    )

    migration.encrypt_secrets(historical, None)
    encrypted = dict(WebhookEndpoint.objects.values_list("pk", "secret"))
    migration.encrypt_secrets(historical, None)  # a second run changes nothing

    assert dict(WebhookEndpoint.objects.values_list("pk", "secret")) == encrypted
    assert "whsec_old" not in _stored_secrets()
    assert webhook_secrets.secret_decrypt(encrypted[plain.pk]) == "whsec_old"
    migration.decrypt_secrets(historical, None)
    assert sorted(_stored_secrets()) == sorted(["whsec_old", new_secret])


# --- a lost message: the broker down at commit, recovery ------------------------------------------


class BrokerDown(Exception):
    """What a broker client raises when Redis is unreachable."""


def _broker_down(*args: Any, **kwargs: Any) -> Any:
    raise BrokerDown("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


def test_a_broker_down_at_commit_does_not_fail_the_request_and_recovery_delivers(
    alice, alice_client, receiver, worker, settings, monkeypatch, caplog
):
    _endpoint(alice, receiver, ["prompt.version_created"])
    monkeypatch.setattr(deliver_webhook, "send_with_options", _broker_down)

    response = alice_client.post(
        "/api/v1/prompts", {"name": "outage", "model": "local/smollm2", "template": "Hi"}, format="json"
    )

    assert response.status_code == 201, response.content
    [delivery] = WebhookDelivery.objects.all()
    assert (delivery.status, delivery.attempts) == (WebhookDelivery.Status.PENDING, 0)
    assert "webhook delivery not sent; recovery will send it" in caplog.text
    assert receiver.secret not in caplog.text

    monkeypatch.undo()  # the broker is back
    settings.WEBHOOK_RECOVER_AFTER_S = 60
    assert webhook_services.webhook_deliveries_recover() == 0  # not overdue yet: its message may still come
    WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=timezone.now() - timedelta(seconds=61))

    assert webhook_services.webhook_deliveries_recover() == 1
    delivery = wait_for_delivery(delivery.pk)

    assert delivery.status == WebhookDelivery.Status.SUCCEEDED
    assert delivery.attempts == 1
    assert [r.verified for r in receiver.received] == [True]
    assert webhook_services.webhook_deliveries_recover() == 0


def test_recovery_sends_each_overdue_delivery_once_and_fails_exhausted_ones(alice, receiver, settings, monkeypatch):
    settings.WEBHOOK_RECOVER_AFTER_S = 60
    sent: list[str] = []
    monkeypatch.setattr(deliver_webhook, "send_with_options", lambda *, args, delay=None: sent.append(args[0]))
    endpoint = _endpoint(alice, receiver, ["prompt.version_created"])
    now = timezone.now()
    long_ago = now - timedelta(seconds=600)

    def delivery(**fields: Any) -> WebhookDelivery:
        row = WebhookDelivery.objects.create(endpoint=endpoint, event="prompt.version_created", payload={})
        WebhookDelivery.objects.filter(pk=row.pk).update(**fields)
        return row

    never_sent = delivery(created_at=long_ago)
    lease_ran_out = delivery(created_at=long_ago, attempts=1, next_attempt_at=long_ago)  # its worker died
    delivery(created_at=now)  # just emitted: its message is on its way
    delivery(created_at=long_ago, attempts=1, next_attempt_at=now + timedelta(seconds=30))  # retry due later
    delivery(created_at=long_ago, status="succeeded", delivered_at=long_ago)
    exhausted = delivery(created_at=long_ago, attempts=settings.WEBHOOK_MAX_ATTEMPTS, next_attempt_at=long_ago)

    first = webhook_services.webhook_deliveries_recover(now=now)
    second = webhook_services.webhook_deliveries_recover(now=now)  # another worker's pass, before the messages ran

    assert first == 2 and second == 0
    assert sorted(sent) == sorted([str(never_sent.pk), str(lease_ran_out.pk)])
    failed = WebhookDelivery.objects.get(pk=exhausted.pk)
    assert failed.status == WebhookDelivery.Status.FAILED
    assert failed.last_error == "The last attempt never finished (its worker stopped)."
    # The message recovery sent can claim the delivery it took.
    webhook_services.webhook_deliver(delivery_id=str(never_sent.pk))
    assert WebhookDelivery.objects.get(pk=never_sent.pk).status == WebhookDelivery.Status.SUCCEEDED
    assert [r.verified for r in receiver.received] == [True]
    # A minute later the other resent message was lost too, and the new delivery's never came: both sent again.
    assert webhook_services.webhook_deliveries_recover(now=now + timedelta(seconds=61)) == 2


def test_recovery_counts_only_what_the_broker_took(alice, receiver, settings, monkeypatch):
    settings.WEBHOOK_RECOVER_AFTER_S = 60
    endpoint = _endpoint(alice, receiver, ["prompt.version_created"])
    row = WebhookDelivery.objects.create(endpoint=endpoint, event="prompt.version_created", payload={})
    WebhookDelivery.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(seconds=600))
    monkeypatch.setattr(deliver_webhook, "send_with_options", _broker_down)

    assert webhook_services.webhook_deliveries_recover() == 0  # and no exception: the next pass tries again

    assert WebhookDelivery.objects.get(pk=row.pk).status == WebhookDelivery.Status.PENDING


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="real concurrency needs PostgreSQL")
def test_recovery_passes_running_at_once_send_each_delivery_once(
    transactional_db, alice, receiver, settings, monkeypatch
):
    settings.WEBHOOK_RECOVER_AFTER_S = 60
    endpoint = _endpoint(alice, receiver, ["prompt.version_created"])
    rows = [WebhookDelivery(endpoint=endpoint, event="prompt.version_created", payload={}) for _ in range(40)]
    WebhookDelivery.objects.bulk_create(rows)
    WebhookDelivery.objects.update(created_at=timezone.now() - timedelta(seconds=600))
    sent: list[str] = []
    lock = threading.Lock()

    def send(*, args: tuple[str], delay: int | None = None) -> None:
        time.sleep(0.005)  # a broker round trip: the passes overlap
        with lock:
            sent.append(args[0])

    monkeypatch.setattr(deliver_webhook, "send_with_options", send)
    start = threading.Barrier(4)
    counts: list[int] = []

    def recover() -> None:
        try:
            start.wait()
            counts.append(webhook_services.webhook_deliveries_recover())
        finally:
            connection.close()

    threads = [threading.Thread(target=recover) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(sent) == sorted(str(row.pk) for row in rows)  # each once
    assert sum(counts) == 40
