"""Run events for webhooks: `run.succeeded` and `run.failed`, emitted by runs.services."""

import uuid
from typing import Any

from billing.models import CostLog
from runs.models import Run
from webhooks.models import WebhookEvent
from webhooks.services import webhook_emit

# Outputs can be long; receivers fetch the full run from the API when they need it.
OUTPUT_LIMIT = 4096

_EVENTS = {Run.Status.SUCCEEDED: WebhookEvent.RUN_SUCCEEDED, Run.Status.FAILED: WebhookEvent.RUN_FAILED}


def run_event_payload(run: Run) -> dict[str, Any]:
    cost = CostLog.objects.filter(run_id=run.pk).first()
    prompt = run.prompt_version.prompt
    return {
        "run_id": str(run.pk),
        "status": run.status,
        "prompt": {"id": str(prompt.pk), "name": prompt.name},
        "version": run.prompt_version.number,
        "model": f"{run.provider}/{run.model}",
        "output": run.output[:OUTPUT_LIMIT],
        "output_truncated": len(run.output) > OUTPUT_LIMIT,
        "usage": {
            "prompt_tokens": run.prompt_tokens,
            "completion_tokens": run.completion_tokens,
            "total_tokens": run.total_tokens,
            "estimated": run.tokens_estimated,
        },
        "cost": (
            {"total": str(cost.total_cost) if cost.total_cost is not None else None, "currency": cost.currency}
            if cost is not None
            else None
        ),
        "error": {"code": run.error_code, "message": run.error_message} if run.error_code else None,
        "latency_ms": run.latency_ms,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def run_event_emit(*, run_id: uuid.UUID) -> None:
    """Emits `run.succeeded` or `run.failed` for a finished run, at most once per run and endpoint.

    Call it inside the transaction that finishes the run; a run in any other state emits nothing.
    """
    run = Run.objects.select_related("owner", "prompt_version__prompt").filter(pk=run_id).first()
    if run is None or run.status not in _EVENTS:
        return
    event = _EVENTS[Run.Status(run.status)]
    webhook_emit(owner=run.owner, event=event, payload=run_event_payload(run), dedupe_key=f"{event}:{run.pk}")
