"""Reads of webhook endpoints and their delivery logs."""

from django.db.models import QuerySet

from accounts.models import Project
from webhooks.models import WebhookDelivery, WebhookEndpoint


def webhook_endpoint_list(*, project: Project) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(project=project).order_by("-created_at")


def webhook_delivery_list(*, endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-created_at")
