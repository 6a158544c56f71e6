"""Reads of providers: their reachability (the health check) and the models they offer (the
admin's version editor)."""

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from providers.checks import model_split
from providers.clients import ProviderError, cached_model_ids, fetch_model_ids
from providers.models import Provider

PROVIDER_PROBE_TIMEOUT = 3.0


def provider_states() -> dict[str, str]:
    """Each provider's state by name, for GET /api/v1/health?providers=1 (registered in apps.py):
    `ok` (it answered its model listing), `disabled`, `not checked (<kind>)`, or `error: <code>`.

    Enabled openai-compatible providers are asked all at once, each for at most PROVIDER_PROBE_TIMEOUT
    seconds, and without their key (which stays in providers.clients): any HTTP answer, a 401 too, shows
    the server is there.
    """
    providers = list(Provider.objects.order_by("name"))
    states = {p.name: "disabled" if not p.enabled else f"not checked ({p.kind})" for p in providers}
    probed = [p for p in providers if p.enabled and p.kind == Provider.Kind.OPENAI_COMPATIBLE]
    if probed:
        with ThreadPoolExecutor(max_workers=min(len(probed), 8)) as pool:
            states.update(zip((p.name for p in probed), pool.map(_provider_state, probed), strict=True))
    return states


def _provider_state(provider: Provider) -> str:
    try:
        fetch_model_ids(provider.base_url, api_key=None, timeout=min(provider.timeout, PROVIDER_PROBE_TIMEOUT))
    except ProviderError as error:
        if error.status in (401, 403):
            return f"ok (HTTP {error.status} without its key)"
        return f"error: {error.code}" + (f" (HTTP {error.status})" if error.status else "")
    return "ok"


# Grouped choices for a <select>: (provider name, [(model string, model id), ...]).
ModelChoices = list[tuple[str, list[tuple[str, str]]]]


def model_choices(*, known: Iterable[str] = ()) -> ModelChoices:
    """The models of every enabled provider, as `<provider>/<model id>` choices grouped by provider.

    An openai-compatible provider's are those its listing names (asked all at once, each for at most
    PROVIDER_PROBE_TIMEOUT seconds, and cached: providers.clients.cached_model_ids); the `known`
    model strings (those a prompt's versions use) are added to their provider's group, since the
    Hugging Face hub cannot be listed. A provider that is disabled offers nothing.
    """
    providers = list(Provider.objects.filter(enabled=True).order_by("name"))
    listed: dict[str, list[str]] = {p.name: [] for p in providers}
    probed = [p for p in providers if p.kind == Provider.Kind.OPENAI_COMPATIBLE]
    if probed:
        with ThreadPoolExecutor(max_workers=min(len(probed), 8)) as pool:
            for provider, ids in zip(
                probed, pool.map(lambda p: cached_model_ids(p, timeout=PROVIDER_PROBE_TIMEOUT), probed), strict=True
            ):
                listed[provider.name].extend(ids or [])
    for model in known:
        name, model_id = model_split(model)
        if model_id and name in listed and model_id not in listed[name]:
            listed[name].append(model_id)
    return [(name, [(f"{name}/{model_id}", model_id) for model_id in sorted(ids)]) for name, ids in listed.items()]
