"""GET /metrics: request and run figures for Prometheus, protected by a setting."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from billing.tests.factories import CostLogFactory
from runs.models import Run
from runs.tests.factories import RunFactory

pytestmark = pytest.mark.django_db


def _samples(response):
    families = text_string_to_metric_families(response.content.decode())
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_metrics_expose_requests_runs_tokens_cost_latency_and_queue_depth(client, alice_client):
    alice_client.get("/api/v1/prompts")
    CostLogFactory(run=RunFactory(latency_ms=300, attempts=3), prompt_tokens=10, completion_tokens=5)
    RunFactory(status=Run.Status.QUEUED, output="", latency_ms=None)

    response = client.get("/metrics")

    assert response.status_code == 200
    samples = _samples(response)
    route = (("method", "GET"), ("route", "prompt-list"), ("status", "200"))
    assert samples[("llmops_http_requests_total", route)] >= 1
    succeeded = (("model", "test-model"), ("provider", "testllm"), ("status", "succeeded"))
    assert samples[("llmops_runs_total", succeeded)] == 1
    assert samples[("llmops_runs_in_flight", (("status", "queued"),))] == 1
    assert samples[("llmops_run_retries_total", ())] == 2
    key = (("kind", "prompt"), ("model", "test-model"), ("provider", "testllm"))
    assert samples[("llmops_run_tokens_total", key)] == 10
    assert samples[("llmops_run_cost_usd_total", (("model", "test-model"), ("provider", "testllm")))] > 0
    assert samples[("llmops_provider_latency_seconds_bucket", (("le", "0.25"), ("provider", "testllm")))] == 0
    assert samples[("llmops_provider_latency_seconds_bucket", (("le", "0.5"), ("provider", "testllm")))] == 1
    assert samples[("llmops_provider_latency_seconds_sum", (("provider", "testllm"),))] == pytest.approx(0.3)


def test_metrics_need_the_token_when_one_is_set(client, settings):
    settings.METRICS_TOKEN = "scrape-secret"

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200


def test_metrics_without_a_token_are_for_loopback_only(client):
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200


def test_metrics_can_be_disabled(client, settings):
    settings.METRICS_ENABLED = False

    assert client.get("/metrics").status_code == 404


def test_rate_limit_rejections_are_counted(client, alice_client, settings):
    settings.RATE_LIMIT_ENABLED = True
    settings.RATE_LIMIT_REQUESTS = "2/m"

    def rejected() -> float:
        return _samples(client.get("/metrics")).get(("llmops_rate_limit_rejections_total", (("group", "requests"),)), 0)

    before = rejected()
    statuses = [alice_client.get("/api/v1/prompts").status_code for _ in range(4)]

    assert statuses.count(429) >= 2
    assert rejected() - before == statuses.count(429)
