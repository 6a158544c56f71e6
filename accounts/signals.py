"""Every user gets a personal project when the user is created, however it is created (the admin,
createsuperuser, a factory, the demo), so single-user flows need no project of their own. Any write
to what authenticates a key (the key, its creator, its project, a membership) invalidates every
process's cached rows once it commits (llmops/config_cache.py)."""

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.models import APIKey, Membership, Project, User
from accounts.project_services import personal_project_create
from llmops import config_cache


@receiver(post_save, sender=APIKey, dispatch_uid="accounts.config_cache.key_saved")
@receiver(post_delete, sender=APIKey, dispatch_uid="accounts.config_cache.key_deleted")
@receiver(post_save, sender=User, dispatch_uid="accounts.config_cache.user_saved")
@receiver(post_delete, sender=User, dispatch_uid="accounts.config_cache.user_deleted")
@receiver(post_save, sender=Project, dispatch_uid="accounts.config_cache.project_saved")
@receiver(post_delete, sender=Project, dispatch_uid="accounts.config_cache.project_deleted")
@receiver(post_save, sender=Membership, dispatch_uid="accounts.config_cache.membership_saved")
@receiver(post_delete, sender=Membership, dispatch_uid="accounts.config_cache.membership_deleted")
def _config_cache_invalidate(sender: Any, **kwargs: Any) -> None:
    config_cache.invalidate_on_commit()


@receiver(post_save, sender=User, dispatch_uid="accounts.personal_project")
def _personal_project(sender: Any, instance: User, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if created and not raw:  # (raw: loaddata brings the project rows itself)
        personal_project_create(user=instance)
