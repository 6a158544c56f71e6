import factory

from providers.models import Provider


class ProviderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Provider
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"provider{n}")
    kind = Provider.Kind.OPENAI_COMPATIBLE
    base_url = "http://127.0.0.1:9/v1"
