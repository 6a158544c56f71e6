"""Checks of a `<provider>/<model id>` string, shared by everything that takes one (versions, runs,
batches): check first, then do, so a bad model is a 400 now and not a failure in a worker."""

import copy
import re
from typing import Any

from llmops import config_cache
from llmops.config_cache import ProcessCache
from llmops.errors import ValidationFailed
from providers import clients
from providers.models import Provider

# `<provider>/<model id>`: a provider name (a slug), then the provider's own id (which may hold `/`).
MODEL_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,49}/[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$"
_MODEL = re.compile(MODEL_PATTERN)
MODEL_HELP = "Must be '<provider>/<model id>', e.g. 'local/smollm2' or 'hf/Qwen/Qwen2.5-1.5B-Instruct'."


# Every run reads its provider's row (by name) when it is created and again when it executes: this
# process keeps the rows it read (llmops/config_cache.py; providers.signals invalidates them).
provider_rows: ProcessCache[Provider] = ProcessCache("providers")


def provider_by_name(name: str) -> Provider | None:
    """The provider named `name` (the caller's own copy), or None."""
    token = config_cache.generation()
    provider = provider_rows.get(name, token)
    if not isinstance(provider, Provider):
        provider = Provider.objects.filter(name=name).first()
        if provider is None:
            return None  # not kept: unknown names are the caller's to choose
        provider_rows.put(name, token, provider)
    return copy.copy(provider)


def model_split(model: str) -> tuple[str, str]:
    provider_name, _, model_id = model.partition("/")
    return provider_name, model_id


def model_shape_check(*, model: Any, field: str) -> str:
    """`model` when it has the `<provider>/<model id>` shape, or a ValidationFailed naming `field`."""
    if not isinstance(model, str) or not _MODEL.fullmatch(model):
        raise ValidationFailed("Invalid model.", fields={field: [MODEL_HELP]})
    return model


def provider_check(*, model: Any, field: str) -> Provider:
    """The enabled provider that `model` names, or a ValidationFailed naming `field`.

    Checks the string's shape, then that the provider exists and is enabled; asks the provider
    nothing. Versions take this check: they are definitions, saved whether or not the provider
    answers now. Runs take model_check, which adds the provider's model listing.
    """
    model_shape_check(model=model, field=field)
    provider_name, _ = model_split(model)
    provider = provider_by_name(provider_name)
    if provider is None:
        known = ", ".join(Provider.objects.order_by("name").values_list("name", flat=True)) or "none yet"
        raise ValidationFailed(
            f"Unknown provider {provider_name!r}.",
            fields={
                field: [f"No provider named {provider_name!r} (known: {known}); staff add providers in the admin."]
            },
            code="unknown_provider",
        )
    if not provider.enabled:
        raise ValidationFailed(
            f"Provider {provider_name!r} is disabled.",
            fields={field: ["This provider is disabled."]},
            code="provider_disabled",
        )
    return provider


def model_check(*, model: str, field: str) -> tuple[Provider, str]:
    """The enabled provider and the model id of `model`, or a ValidationFailed naming `field`.

    Checks, in order: the string's shape, that the provider exists and is enabled (provider_check),
    and that the provider lists the model (a cached listing; see clients.check_model).
    """
    provider = provider_check(model=model, field=field)
    _, model_id = model_split(model)
    try:
        clients.check_model(provider=provider, model_id=model_id)
    except clients.ProviderError as exc:
        raise ValidationFailed(exc.message, fields={field: [exc.message]}, code=exc.code) from None
    return provider, model_id
