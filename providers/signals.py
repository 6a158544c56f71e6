"""A write to a provider invalidates every process's cached rows once it commits
(llmops/config_cache.py), so a disabled or re-pointed provider holds from the next call on."""

from django.db.models.signals import post_delete, post_save

from llmops import config_cache
from providers.models import Provider

post_save.connect(config_cache.invalidate_on_commit, sender=Provider, dispatch_uid="providers.config_cache.saved")
post_delete.connect(config_cache.invalidate_on_commit, sender=Provider, dispatch_uid="providers.config_cache.deleted")
