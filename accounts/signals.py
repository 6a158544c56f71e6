"""Every user gets a personal project when the user is created, however it is created (the admin,
createsuperuser, a factory, the demo), so single-user flows need no project of their own."""

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from accounts.models import User
from accounts.project_services import personal_project_create


@receiver(post_save, sender=User, dispatch_uid="accounts.personal_project")
def _personal_project(sender: Any, instance: User, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if created and not raw:  # (raw: loaddata brings the project rows itself)
        personal_project_create(user=instance)
