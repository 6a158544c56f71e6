"""Reads for users and API keys."""

from django.db.models import QuerySet

from accounts.models import APIKey, User


def api_key_list(*, user: User) -> QuerySet[APIKey]:
    return APIKey.objects.filter(user=user).order_by("-created_at")
