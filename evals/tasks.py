"""Dramatiq actors of the evals app. They take ids only and delegate to services."""

import dramatiq

from evals import experiment_services

# A judge scorer makes a model call per example and arm: the time limit leaves room for many.
SCORE_TIME_LIMIT_MS = 30 * 60 * 1000


# Idempotent: stored scores are skipped and the experiment completes by a conditional UPDATE, so a
# redelivery or a retry after a crash computes only what is missing and completes it once.
@dramatiq.actor(queue_name="evals", max_retries=3, time_limit=SCORE_TIME_LIMIT_MS, min_backoff=1000, max_backoff=60_000)
def score_experiment(experiment_id: str) -> None:
    experiment_services.experiment_score(experiment_id=experiment_id)
