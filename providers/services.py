"""Writes for providers: one way to create or change a provider, used by the admin and the command."""

from django.core.exceptions import ValidationError
from django.db import transaction

from llmops.errors import FieldErrors, ValidationFailed
from providers.models import Provider


@transaction.atomic
def provider_set(
    *,
    name: str,
    kind: str | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    timeout: float | None = None,
    enabled: bool | None = None,
) -> tuple[Provider, bool]:
    """Creates or updates a provider; None leaves a field as it is. Returns (provider, created).

    Precondition: `kind` is given when the provider does not exist yet.
    """
    provider = Provider.objects.select_for_update().filter(name=name).first()
    created = provider is None
    if provider is None:
        if kind is None:
            raise ValidationFailed("A new provider needs a kind.", fields={"kind": ["Required for a new provider."]})
        provider = Provider(name=name, kind=kind)
    if kind is not None:
        provider.kind = kind
    if base_url is not None:
        provider.base_url = base_url.strip()
    if api_key_env is not None:
        provider.api_key_env = api_key_env.strip()
    if timeout is not None:
        provider.timeout = timeout
    if enabled is not None:
        provider.enabled = enabled

    _validate_provider(provider)
    provider.save()
    return provider, created


def _validate_provider(provider: Provider) -> None:
    # The model's validation (field validators and Provider.clean), which the admin form runs too:
    # one set of rules for every way a provider is written. No message repeats a value.
    try:
        provider.full_clean(validate_unique=False)
    except ValidationError as exc:
        errors: FieldErrors = {field: [str(m) for m in messages] for field, messages in exc.message_dict.items()}
        raise ValidationFailed("Invalid provider.", fields=errors) from None
