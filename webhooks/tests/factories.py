import secrets

import factory

from accounts.tests.factories import UserFactory
from webhooks.models import WebhookDelivery, WebhookEndpoint


class WebhookEndpointFactory(factory.django.DjangoModelFactory[WebhookEndpoint]):
    """A row written directly (no URL check); use webhooks.services.webhook_endpoint_create for the real path."""

    class Meta:
        model = WebhookEndpoint

    class Params:
        # Who made it: the row goes to that user's personal project, with them as its creator.
        owner = factory.SubFactory(UserFactory)

    project = factory.LazyAttribute(lambda endpoint: endpoint.owner.personal_project)
    created_by = factory.LazyAttribute(lambda endpoint: endpoint.owner)
    url = factory.Sequence(lambda n: f"https://hooks.example.com/{n}")
    events = factory.LazyFunction(lambda: ["run.succeeded"])
    secret = factory.LazyFunction(lambda: "whsec_" + secrets.token_urlsafe(32))


class WebhookDeliveryFactory(factory.django.DjangoModelFactory[WebhookDelivery]):
    class Meta:
        model = WebhookDelivery

    endpoint = factory.SubFactory(WebhookEndpointFactory)
    event = "run.succeeded"
    payload = factory.LazyFunction(dict)
