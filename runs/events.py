"""Run events for webhooks: `run.succeeded` and `run.failed`, emitted by runs.services.run_finish.

The payload is the run's public shape, the same as the API's and a batch export's."""

from typing import Any

from runs.models import Run
from runs.serializers import RunSerializer
from webhooks.models import WebhookEvent
from webhooks.services import webhook_emit

# Outputs can be long; receivers fetch the full run from the API when they need it.
OUTPUT_LIMIT = 4096

_EVENTS = {Run.Status.SUCCEEDED: WebhookEvent.RUN_SUCCEEDED, Run.Status.FAILED: WebhookEvent.RUN_FAILED}


def run_event_payload(run: Run) -> dict[str, Any]:
    """The run's public shape, as GET /api/v1/runs/{id} returns it (runs.api.serializers.RunSerializer),
    with the output cut at OUTPUT_LIMIT characters (`output_truncated` says so)."""
    data = dict(RunSerializer(run).data)
    data["output_truncated"] = len(run.output) > OUTPUT_LIMIT
    data["output"] = run.output[:OUTPUT_LIMIT]
    return data


def run_event_emit(*, run: Run) -> None:
    """Emits `run.succeeded` or `run.failed` for a run just finished (`run` holds its new status), at
    most once per run and endpoint.

    Call it inside the transaction that finishes the run; a run in any other state emits nothing. The
    payload is read (the run as the API shows it) only when an endpoint subscribes: most projects
    have none, and then this costs one query.
    """
    if run.status not in _EVENTS:
        return
    event = _EVENTS[Run.Status(run.status)]

    def payload() -> dict[str, Any]:
        finished = Run.objects.select_related("project", "prompt_version__prompt", "cost_log").get(pk=run.pk)
        return run_event_payload(finished)

    webhook_emit(project=run.project, event=event, payload=payload, dedupe_key=f"{event}:{run.pk}")
