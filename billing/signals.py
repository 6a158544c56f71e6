"""A write to a price or a budget invalidates every process's cached rows once it commits
(llmops/config_cache.py): a new price is charged, and a new budget holds, from the next run on."""

from django.db.models.signals import post_delete, post_save

from billing.models import Budget, ModelPrice
from llmops import config_cache

for model in (ModelPrice, Budget):
    name = model._meta.model_name
    post_save.connect(
        config_cache.invalidate_on_commit, sender=model, dispatch_uid=f"billing.config_cache.{name}.saved"
    )
    post_delete.connect(
        config_cache.invalidate_on_commit, sender=model, dispatch_uid=f"billing.config_cache.{name}.deleted"
    )
