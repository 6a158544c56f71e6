"""A write to a prompt or a label invalidates every process's cached rows once it commits
(llmops/config_cache.py): a label moved, split or removed, a prompt renamed or archived, holds from
the next run on, in every process."""

from llmops import config_cache
from prompts.models import Prompt, PromptLabel

config_cache.invalidate_on_writes(Prompt, PromptLabel, app="prompts")
