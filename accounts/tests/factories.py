import secrets

import factory

from accounts.models import User, WebhookDelivery, WebhookEndpoint


class UserFactory(factory.django.DjangoModelFactory[User]):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct-horse-battery")


class WebhookEndpointFactory(factory.django.DjangoModelFactory[WebhookEndpoint]):
    """A row written directly (no URL check); use accounts.webhooks.webhook_endpoint_create for the real path."""

    class Meta:
        model = WebhookEndpoint

    owner = factory.SubFactory(UserFactory)
    url = factory.Sequence(lambda n: f"https://hooks.example.com/{n}")
    events = factory.LazyFunction(lambda: ["run.succeeded"])
    secret = factory.LazyFunction(lambda: "whsec_" + secrets.token_urlsafe(32))


class WebhookDeliveryFactory(factory.django.DjangoModelFactory[WebhookDelivery]):
    class Meta:
        model = WebhookDelivery

    endpoint = factory.SubFactory(WebhookEndpointFactory)
    event = "run.succeeded"
    payload = factory.LazyFunction(dict)
