"""Reads of providers: their reachability, for the health check."""

from concurrent.futures import ThreadPoolExecutor

from providers.clients import ProviderError, fetch_model_ids
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
