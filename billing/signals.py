"""A write to a price or a budget invalidates every process's cached rows once it commits
(llmops/config_cache.py): a new price is charged, and a new budget holds, from the next run on."""

from billing.models import Budget, ModelPrice
from llmops import config_cache

config_cache.invalidate_on_writes(Budget, ModelPrice, app="billing")
