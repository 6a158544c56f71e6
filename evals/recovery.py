"""The evals step of the workers' recovery pass (registered in EvalsConfig.ready with runs.recovery):
an experiment whose batches all finished but that is still running lost its score message (the
broker was down when the last batch completed, or lost it); one whose scoring stopped half-way
(its worker died) is sent again once the scoring actor's time limit has passed."""

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Q
from django.utils import timezone

from evals.models import Experiment
from evals.tasks import SCORE_TIME_LIMIT_MS, score_experiment
from llmops.queue import send_or_log
from runs.models import Batch

logger = logging.getLogger(__name__)


def send_score(experiment_id: Any) -> bool:
    """Sends the experiment's score message; never raises (recovery sends it again)."""
    return send_or_log(
        score_experiment, str(experiment_id), what="experiment scoring", experiment_id=str(experiment_id)
    )


def experiments_recover(*, limit: int = 200, idle_for: timedelta | None = None) -> int:
    """Sends a score message for each experiment that should be scored and was not: running with
    every batch finished for `idle_for` (default: the recovery interval), or scoring for longer than
    the actor's time limit. A redundant message is harmless (experiment_score is idempotent)."""
    now = timezone.now()
    idle_for = idle_for if idle_for is not None else timedelta(seconds=settings.RUN_RECOVER_INTERVAL_S)
    finished = (
        Experiment.objects.filter(status=Experiment.Status.RUNNING)
        .annotate(
            unfinished=Count("arms", filter=Q(arms__batch__status__in=Batch.ACTIVE) | Q(arms__batch__isnull=True)),
            last_finished=Max("arms__batch__finished_at"),
        )
        .filter(unfinished=0, last_finished__lt=now - idle_for)
    )
    stuck = Experiment.objects.filter(
        status=Experiment.Status.SCORING, updated_at__lt=now - timedelta(milliseconds=SCORE_TIME_LIMIT_MS)
    )
    ids = [*finished.values_list("pk", flat=True)[:limit], *stuck.values_list("pk", flat=True)[:limit]]
    for experiment_id in ids:
        send_score(experiment_id)
    if ids:
        logger.info("experiments sent for scoring by recovery", extra={"count": len(ids)})
    return len(ids)
