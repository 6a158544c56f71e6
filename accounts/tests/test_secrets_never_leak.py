"""No API key or webhook signing secret leaves the server except in the one response (or admin page) that
creates or rotates it: not in any other response body or header, log record, error, admin page or database row.

Every log record is captured (root at DEBUG, SQL queries included, non-propagating loggers attached),
while a key is created, rotated with a grace period, used, presented with a wrong secret, revoked,
expired, refused for a missing scope and used with its rotated-out secret.
"""

import logging
import re
import socket
from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import keys, services
from accounts.models import APIKey
from llmops.logging import JSONFormatter
from webhooks import services as webhook_services
from webhooks.models import WebhookDelivery, WebhookEndpoint

KEYS_URL = "/api/v1/keys"


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    loggers = [logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)]
    # Loggers configured above DEBUG (django.db.backends, django.server) are lowered; caplog restores them.
    for logger in loggers:
        if logger.level > logging.DEBUG:
            caplog.set_level(logging.DEBUG, logger=logger.name)
    # caplog listens on the root logger; a logger that does not propagate would escape it.
    detached = [logger for logger in loggers if not logger.propagate]
    for logger in detached:
        logger.addHandler(caplog.handler)
    # Log every SQL statement too, as DEBUG=True would.
    debug_cursor = connection.force_debug_cursor
    connection.force_debug_cursor = True
    yield caplog
    connection.force_debug_cursor = debug_cursor
    for logger in detached:
        logger.removeHandler(caplog.handler)


class Recorder:
    """Keeps every response, with the plaintext (if any) that response is allowed to show once."""

    def __init__(self) -> None:
        self.responses: list[tuple[str, Any, str | None]] = []

    def __call__(self, label: str, response: Any, status: int, shows: str | None = None) -> Any:
        assert response.status_code == status, (label, response.content)
        self.responses.append((label, response, shows))
        return response


def _client(plaintext: str, header: str = "Authorization") -> APIClient:
    client = APIClient()
    if header == "Authorization":
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    else:
        client.credentials(HTTP_X_API_KEY=plaintext)
    return client


def _texts_of(response: Any) -> list[str]:
    texts = [response.content.decode(errors="replace")]
    texts += [f"{name}: {value}" for name, value in response.items()]
    texts += [morsel.OutputString() for morsel in response.cookies.values()]
    return texts


def _sensitive(plaintexts: list[str]) -> list[str]:
    """Each plaintext and its secret part (the prefix alone is public)."""
    found = []
    for plaintext in plaintexts:
        parts = keys.split(plaintext)
        assert parts is not None
        found += [plaintext, parts[1]]
    return found


def test_no_secret_in_any_response_log_or_admin_page(alice, admin_client, all_logs):
    record = Recorder()
    _, bootstrap = services.api_key_create(project=alice.personal_project, created_by=alice, name="bootstrap")
    admin = _client(bootstrap)

    # Creation: the new plaintext is shown in this response only.
    created = admin.post(KEYS_URL, {"name": "ci"}, format="json")
    record("create", created, 201, shows=created.json().get("key"))
    ci_key, ci_old = APIKey.objects.get(pk=created.json()["id"]), created.json()["key"]

    # Rotation with a grace period: the new plaintext once; the old one still works for now.
    rotated = admin.post(f"{KEYS_URL}/{ci_key.pk}/rotate", {"grace_seconds": 600}, format="json")
    record("rotate", rotated, 200, shows=rotated.json().get("key"))
    ci_new = rotated.json()["key"]
    hashes = [ci_key.secret_hash, *APIKey.objects.filter(pk=ci_key.pk).values_list("secret_hash", flat=True)]

    # Use of a good key, through both headers, and of the old secret within its grace period.
    record("good key", _client(ci_new).get(KEYS_URL), 200)
    record("good key, X-API-Key", _client(ci_new, "X-API-Key").get("/api/v1/prompts"), 200)
    record("old secret in grace", _client(ci_old).get(KEYS_URL), 200)

    # Wrong secrets.
    prefix = ci_key.prefix
    record("wrong secret", _client(f"{prefix}.not-the-secret").get(KEYS_URL), 401)
    record("tampered", _client(ci_new + "x", "X-API-Key").get(KEYS_URL), 401)

    # A revoked key.
    doomed = admin.post(KEYS_URL, {"name": "doomed"}, format="json")
    record("create doomed", doomed, 201, shows=doomed.json().get("key"))
    revoked_plaintext = doomed.json()["key"]
    record("revoke", admin.delete(f"{KEYS_URL}/{doomed.json()['id']}"), 204)
    record("revoked key", _client(revoked_plaintext).get(KEYS_URL), 401)
    record("rotate revoked", admin.post(f"{KEYS_URL}/{doomed.json()['id']}/rotate", format="json"), 409)

    # An expired key.
    soon = (timezone.now() + timedelta(days=1)).isoformat()
    expiring = admin.post(KEYS_URL, {"name": "expiring", "expires_at": soon}, format="json")
    record("create expiring", expiring, 201, shows=expiring.json().get("key"))
    expired_plaintext = expiring.json()["key"]
    APIKey.objects.filter(pk=expiring.json()["id"]).update(expires_at=timezone.now() - timedelta(minutes=1))
    record("expired key", _client(expired_plaintext, "X-API-Key").get(KEYS_URL), 401)

    # A key without the scope an endpoint needs, and a refused creation.
    reader = admin.post(KEYS_URL, {"name": "reader", "scopes": ["prompts:read"]}, format="json")
    record("create reader", reader, 201, shows=reader.json().get("key"))
    reader_plaintext = reader.json()["key"]
    record("missing scope", _client(reader_plaintext).get(KEYS_URL), 403)
    record("unknown scope", admin.post(KEYS_URL, {"name": "x", "scopes": ["root"]}, format="json"), 400)

    # The old secret after its grace period ended (time moved by editing the row, not by sleeping).
    APIKey.objects.filter(pk=ci_key.pk).update(previous_secret_expires_at=timezone.now() - timedelta(seconds=1))
    record("old secret after grace", _client(ci_old).get(KEYS_URL), 401)
    record("new secret after grace", _client(ci_new).get(KEYS_URL), 200)

    # The admin: lists and forms, and its own rotation page, which shows only the new plaintext.
    record("admin changelist", admin_client.get("/admin/accounts/apikey/"), 200)
    record("admin change", admin_client.get(f"/admin/accounts/apikey/{ci_key.pk}/change/"), 200)
    record("admin add", admin_client.get("/admin/accounts/apikey/add/"), 200)
    record("admin history", admin_client.get(f"/admin/accounts/apikey/{ci_key.pk}/history/"), 200)
    confirm = admin_client.post(
        "/admin/accounts/apikey/", {"action": "rotate_selected", "_selected_action": [str(ci_key.pk)]}
    )
    record("admin rotate confirmation", confirm, 200)
    admin_rotated = admin_client.post(
        "/admin/accounts/apikey/",
        {"action": "rotate_selected", "_selected_action": [str(ci_key.pk)], "confirm": "yes", "grace_seconds": "0"},
    )
    (admin_plaintext,) = re.findall(
        r'<code class="api-key-plaintext"[^>]*>([^<]+)</code>', admin_rotated.content.decode()
    )
    record("admin rotated", admin_rotated, 200, shows=admin_plaintext)
    added = admin_client.post(
        "/admin/accounts/apikey/add/",
        {
            "project": str(alice.personal_project.pk),
            "created_by": str(alice.pk),
            "name": "from-admin",
            "expires_at_0": "",
            "expires_at_1": "",
            "scopes": ["runs:read"],
        },
    )
    (added_plaintext,) = re.findall(r'<code id="api-key-plaintext"[^>]*>([^<]+)</code>', added.content.decode())
    record("admin added", added, 200, shows=added_plaintext)
    record("admin changelist after", admin_client.get("/admin/accounts/apikey/"), 200)
    record("admin change after", admin_client.get(f"/admin/accounts/apikey/{ci_key.pk}/change/"), 200)
    record("admin-rotated key works", _client(admin_plaintext).get(KEYS_URL), 200)
    record("ci_new after admin rotation", _client(ci_new).get(KEYS_URL), 401)
    hashes += list(APIKey.objects.values_list("secret_hash", flat=True))
    hashes += [h for h in APIKey.objects.values_list("previous_secret_hash", flat=True) if h]

    plaintexts = [
        bootstrap,
        ci_old,
        ci_new,
        revoked_plaintext,
        expired_plaintext,
        reader_plaintext,
        admin_plaintext,
        added_plaintext,
    ]
    assert len(set(plaintexts)) == len(plaintexts)
    secrets = _sensitive(plaintexts)

    # Responses: no secret but the one a creation or rotation shows, and that once; never a hash.
    for label, response, shows in record.responses:
        allowed = set(_sensitive([shows])) if shows else set()
        texts = _texts_of(response)
        for secret in secrets:
            if secret in allowed:
                continue
            assert not any(secret in text for text in texts), (label, secret)
        if shows:
            assert texts[0].count(shows) == 1, label
            assert not any(shows in text for text in texts[1:]), label  # not in a header or cookie
            assert "no-store" in response["Cache-Control"], label
        for secret_hash in hashes:
            assert not any(secret_hash in text for text in texts), (label, "hash")

    # Logs: every record, raw and as the production JSON formatter writes it.
    records = all_logs.records
    assert any(r.name == "llmops.request" and getattr(r, "status", None) == 401 for r in records)
    assert any(r.name == "llmops.request" and getattr(r, "status", None) == 403 for r in records)
    assert any(r.name == "django.db.backends" for r in records), "SQL statements should be captured too"
    formatter = JSONFormatter()
    for log_record in records:
        lines = [log_record.getMessage(), str(log_record.__dict__), formatter.format(log_record)]
        for secret in secrets:
            assert not any(secret in line for line in lines), (log_record.name, log_record.getMessage()[:200])
    for secret in secrets:
        assert secret not in all_logs.text

    # And nothing at rest.
    dump = StringIO()
    call_command("dumpdata", stdout=dump)
    for secret in secrets:
        assert secret not in dump.getvalue()


def test_the_createapikey_command_prints_the_key_to_stdout_only(alice, all_logs):
    out, err = StringIO(), StringIO()

    call_command("createapikey", "alice", "--scopes", "runs:read", stdout=out, stderr=err)

    plaintext = out.getvalue().strip()
    for secret in _sensitive([plaintext]):
        assert secret not in err.getvalue()
        assert secret not in all_logs.text
    assert APIKey.objects.get(created_by=alice).prefix in err.getvalue()


def test_no_webhook_secret_in_any_response_log_admin_page_or_row(alice, alice_client, admin_client, all_logs, settings):
    """Webhook signing secrets: shown by the one response or admin page that registers them, then never
    again; the row holds only their ciphertext, which is not shown either."""
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    record = Recorder()
    with socket.socket() as sock:  # deliveries are attempted (so signed) against a closed port
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"

    created = alice_client.post("/api/v1/webhooks", {"url": url, "events": ["run.failed"]}, format="json")
    api_secret = created.json().get("secret")
    record("webhook create", created, 201, shows=api_secret)
    endpoint = WebhookEndpoint.objects.get(pk=created.json()["id"])
    added = admin_client.post(
        "/admin/webhooks/webhookendpoint/add/",
        {"project": str(alice.personal_project.pk), "url": url, "events": ["run.failed"], "description": ""},
    )
    (admin_secret,) = re.findall(r'<code id="webhook-secret"[^>]*>([^<]+)</code>', added.content.decode())
    record("webhook admin add", added, 200, shows=admin_secret)
    with transaction.atomic():
        deliveries = webhook_services.webhook_emit(
            project=alice.personal_project, event="run.failed", payload={"run_id": "r1"}
        )
    for delivery in deliveries:
        webhook_services.webhook_deliver(delivery_id=str(delivery.pk))
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # and the undecryptable path
    WebhookDelivery.objects.update(next_attempt_at=None)
    for delivery in deliveries:
        webhook_services.webhook_deliver(delivery_id=str(delivery.pk))
    settings.FIELD_ENCRYPTION_KEYS = []

    base = f"/api/v1/webhooks/{endpoint.pk}"
    record("webhook list", alice_client.get("/api/v1/webhooks"), 200)
    record("webhook detail", alice_client.get(base), 200)
    record("webhook patch", alice_client.patch(base, {"description": "x"}, format="json"), 200)
    record("webhook deliveries", alice_client.get(f"{base}/deliveries"), 200)
    admin_base = "/admin/webhooks/webhookendpoint/"
    record("webhook admin changelist", admin_client.get(admin_base), 200)
    record("webhook admin change", admin_client.get(f"{admin_base}{endpoint.pk}/change/"), 200)
    record("webhook admin history", admin_client.get(f"{admin_base}{endpoint.pk}/history/"), 200)
    record("delivery admin", admin_client.get("/admin/webhooks/webhookdelivery/"), 200)
    record(
        "delivery admin detail", admin_client.get(f"/admin/webhooks/webhookdelivery/{deliveries[0].pk}/change/"), 200
    )

    assert api_secret != admin_secret
    secrets = [api_secret, api_secret.removeprefix("whsec_"), admin_secret, admin_secret.removeprefix("whsec_")]
    stored = list(WebhookEndpoint.objects.values_list("secret", flat=True))
    for label, response, shows in record.responses:
        texts = _texts_of(response)
        for secret in secrets:
            if shows and secret in shows:
                continue
            assert not any(secret in text for text in texts), (label, secret)
        for token in stored:
            assert not any(token in text for text in texts), (label, "ciphertext")
        if shows:
            assert texts[0].count(shows) == 1, label
            assert "no-store" in response["Cache-Control"], label
    assert any(r.getMessage() == "webhook signing secret cannot be decrypted" for r in all_logs.records)
    formatter = JSONFormatter()
    for log_record in all_logs.records:
        lines = [log_record.getMessage(), str(log_record.__dict__), formatter.format(log_record)]
        for secret in secrets:
            assert not any(secret in line for line in lines), (log_record.name, log_record.getMessage()[:200])
    dump = StringIO()
    call_command("dumpdata", stdout=dump)
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM accounts_webhookendpoint")
        raw = " ".join(row[0] for row in cursor.fetchall())
    for secret in secrets:
        assert secret not in dump.getvalue()
        assert secret not in raw
