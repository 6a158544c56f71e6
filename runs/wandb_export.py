"""Optional export of finished runs to Weights & Biases (off unless WANDB_PROJECT is set).

One export is one W&B run holding a table of the selected runs (prompt, version, model, status,
output, tokens, latency, cost) and summary counts. `WANDB_MODE=offline` writes it under WANDB_DIR
for a later `wandb sync`. The W&B API key is read by the wandb library from WANDB_API_KEY and never
passes through this code.
"""

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from llmops.errors import ValidationFailed
from runs.models import Run

COLUMNS = [
    "run_id",
    "prompt",
    "version",
    "provider",
    "model",
    "status",
    "output",
    "prompt_tokens",
    "completion_tokens",
    "tokens_estimated",
    "latency_ms",
    "cost_usd",
    "error_code",
    "created_at",
]
EXPORT_CHUNK = 500


def _row(run: Run) -> list[Any]:
    cost_log = getattr(run, "cost_log", None)
    cost = float(cost_log.total_cost) if cost_log is not None and cost_log.total_cost is not None else None
    return [
        str(run.pk),
        run.prompt_version.prompt.name if run.prompt_version else None,  # None: a gateway call to a model
        run.prompt_version.number if run.prompt_version else None,
        run.provider,
        run.model,
        run.status,
        run.output,
        run.prompt_tokens,
        run.completion_tokens,
        run.tokens_estimated,
        run.latency_ms,
        cost,
        run.error_code,
        run.created_at.isoformat(),
    ]


def runs_export_wandb(*, runs: QuerySet[Run], name: str = "") -> dict[str, Any]:
    """Logs the finished runs among `runs` as one W&B run. Precondition: WANDB_PROJECT is set."""
    if not settings.WANDB_PROJECT:
        raise ValidationFailed("W&B export is off: set WANDB_PROJECT.", fields={"WANDB_PROJECT": ["Not set."]})
    import wandb  # imported here: heavy, and only needed when the export is configured

    finished = (
        runs.filter(status__in=[Run.Status.SUCCEEDED, Run.Status.FAILED])
        .select_related("prompt_version__prompt", "cost_log")
        .order_by("created_at")
    )
    table = wandb.Table(columns=list[str | int](COLUMNS))
    counts = {"succeeded": 0, "failed": 0}
    for run in finished.iterator(chunk_size=EXPORT_CHUNK):
        table.add_data(*_row(run))
        counts[run.status] += 1
    directory = Path(settings.WANDB_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    wandb_run = wandb.init(
        project=settings.WANDB_PROJECT,
        entity=settings.WANDB_ENTITY or None,
        mode=settings.WANDB_MODE,
        dir=str(directory),
        job_type="runs-export",
        name=name or None,
        reinit="create_new",
    )
    try:
        wandb_run.log({"runs": table})
        wandb_run.summary["runs_succeeded"] = counts["succeeded"]
        wandb_run.summary["runs_failed"] = counts["failed"]
        run_dir = Path(wandb_run.dir)
    finally:
        wandb_run.finish()
    return {"exported": counts["succeeded"] + counts["failed"], **counts, "directory": str(run_dir.parent)}
