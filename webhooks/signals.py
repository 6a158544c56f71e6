"""A write to a webhook endpoint invalidates every process's cached rows once it commits
(llmops/config_cache.py), so a new, changed or removed subscription holds from the next event on."""

from django.db.models.signals import post_delete, post_save

from llmops import config_cache
from webhooks.models import WebhookEndpoint

post_save.connect(config_cache.invalidate_on_commit, sender=WebhookEndpoint, dispatch_uid="webhooks.config_cache.saved")
post_delete.connect(
    config_cache.invalidate_on_commit, sender=WebhookEndpoint, dispatch_uid="webhooks.config_cache.deleted"
)
