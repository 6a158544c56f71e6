"""A write to a webhook endpoint invalidates every process's cached rows once it commits
(llmops/config_cache.py), so a new, changed or removed subscription holds from the next event on."""

from llmops import config_cache
from webhooks.models import WebhookEndpoint

config_cache.invalidate_on_writes(WebhookEndpoint, app="webhooks")
