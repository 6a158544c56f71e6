"""Prometheus collector of run figures, computed from the database at scrape time (so every web
process reports the same totals, including work done by workers on other machines)."""

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from django.db.models import Count, F, Q, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from billing.models import CostLog
from runs.models import Run

LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class RunsCollector:
    def collect(self) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "llmops_runs", "Runs by status, provider and model.", labels=["status", "provider", "model"]
        )
        by_status = Run.objects.values_list("status", "provider", "model").annotate(n=Count("id")).order_by()
        for status, provider, model, n in by_status:
            runs.add_metric([status, provider, model], n)
        yield runs

        depth = GaugeMetricFamily("llmops_runs_in_flight", "Runs not finished yet, by status.", labels=["status"])
        in_flight = dict(
            Run.objects.filter(status__in=[Run.Status.QUEUED, Run.Status.RUNNING])
            .values_list("status")
            .annotate(n=Count("id"))
            .order_by()
        )
        for status in (Run.Status.QUEUED, Run.Status.RUNNING):
            depth.add_metric([status], in_flight.get(status, 0))
        yield depth

        retries = Run.objects.filter(attempts__gt=1).aggregate(n=Sum(F("attempts") - 1))["n"] or 0
        yield CounterMetricFamily("llmops_run_retries", "Provider call attempts beyond the first.", value=retries)

        tokens = CounterMetricFamily(
            "llmops_run_tokens", "Tokens of finished runs.", labels=["provider", "model", "kind"]
        )
        cost = CounterMetricFamily(
            "llmops_run_cost_usd", "Known cost of succeeded runs in USD.", labels=["provider", "model"]
        )
        sums = (
            CostLog.objects.values_list("provider", "model")
            .annotate(Sum("prompt_tokens"), Sum("completion_tokens"), Sum("total_cost"))
            .order_by()
        )
        for provider, model, prompt_tokens, completion_tokens, usd in sums:
            tokens.add_metric([provider, model, "prompt"], prompt_tokens or 0)
            tokens.add_metric([provider, model, "completion"], completion_tokens or 0)
            cost.add_metric([provider, model], float(usd or Decimal(0)))
        yield tokens
        yield cost

        yield self._latency()

    def _latency(self) -> Metric:
        """Provider latency of succeeded runs as a histogram, bucketed in one aggregate query."""
        histogram = HistogramMetricFamily(
            "llmops_provider_latency_seconds", "Provider call latency of succeeded runs.", labels=["provider"]
        )
        measured = Run.objects.filter(status=Run.Status.SUCCEEDED, latency_ms__isnull=False)
        aggregates = {
            f"le_{i}": Count("id", filter=Q(latency_ms__lte=bound * 1000)) for i, bound in enumerate(LATENCY_BUCKETS_S)
        }
        rows: Any = measured.values("provider").annotate(total=Count("id"), ms=Sum("latency_ms"), **aggregates)
        for row in rows.order_by():
            buckets = [(str(bound), row[f"le_{i}"]) for i, bound in enumerate(LATENCY_BUCKETS_S)]
            buckets.append(("+Inf", row["total"]))
            histogram.add_metric([row["provider"]], buckets, sum_value=(row["ms"] or 0) / 1000)
        return histogram
