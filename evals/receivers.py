"""What evals does when other apps' signals fire (connected in EvalsConfig.ready)."""

from typing import Any

from django.dispatch import receiver

from evals.models import Experiment
from evals.recovery import send_score
from runs.models import Batch
from runs.signals import batch_completed


@receiver(batch_completed, dispatch_uid="evals.score_on_batch_completed")
def score_on_batch_completed(*, batch_id: Any, **kwargs: Any) -> None:
    """A batch of a running experiment completed (the signal comes after the commit): score the
    experiment once its last batch completed."""
    experiment_id = (
        Experiment.objects.filter(arms__batch_id=batch_id, status=Experiment.Status.RUNNING)
        .exclude(arms__batch__status__in=Batch.ACTIVE)
        .values_list("pk", flat=True)
        .first()
    )
    if experiment_id is not None:
        send_score(experiment_id)
