"""A write to a provider invalidates every process's cached rows once it commits
(llmops/config_cache.py), so a disabled or re-pointed provider holds from the next call on."""

from llmops import config_cache
from providers.models import Provider

config_cache.invalidate_on_writes(Provider, app="providers")
