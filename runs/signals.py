"""Signals runs sends for the apps above it (which it cannot import): evals scores an experiment's
batches when they complete."""

from django.dispatch import Signal

# Sent after the commit that completed a batch; kwargs: batch_id (uuid.UUID).
batch_completed = Signal()
