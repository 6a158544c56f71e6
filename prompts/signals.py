"""A write to a prompt or a label invalidates every process's cached rows once it commits
(llmops/config_cache.py): a label moved, split or removed, a prompt renamed or archived, holds from
the next run on, in every process."""

from django.db.models.signals import post_delete, post_save

from llmops import config_cache
from prompts.models import Prompt, PromptLabel

for model in (Prompt, PromptLabel):
    name = model._meta.model_name
    post_save.connect(
        config_cache.invalidate_on_commit, sender=model, dispatch_uid=f"prompts.config_cache.{name}.saved"
    )
    post_delete.connect(
        config_cache.invalidate_on_commit, sender=model, dispatch_uid=f"prompts.config_cache.{name}.deleted"
    )
