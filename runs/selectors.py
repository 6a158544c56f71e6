"""Reads for runs, always scoped to their owner."""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from django.db.models import QuerySet

from accounts.models import User
from llmops.errors import NotFound
from runs.models import Provider, Run
from runs.providers import ProviderError, fetch_model_ids


def run_list(
    *,
    owner: User,
    prompt: str | None = None,
    version: int | None = None,
    status: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Run]:
    runs = Run.objects.filter(owner=owner).select_related("prompt_version__prompt", "cost_log")
    if prompt:
        try:
            runs = runs.filter(prompt_version__prompt_id=uuid.UUID(prompt))
        except ValueError:
            runs = runs.filter(prompt_version__prompt__name=prompt)
    if version is not None:
        runs = runs.filter(prompt_version__number=version)
    if status:
        runs = runs.filter(status=status)
    if created_after is not None:
        runs = runs.filter(created_at__gte=created_after)
    if created_before is not None:
        runs = runs.filter(created_at__lt=created_before)
    return runs.order_by("-created_at")


def run_get(*, owner: User, run_id: str) -> Run:
    try:
        pk = uuid.UUID(str(run_id))
    except ValueError:
        raise NotFound("Run not found.") from None
    run = run_list(owner=owner).filter(pk=pk).first()
    if run is None:
        raise NotFound("Run not found.")
    return run


def run_wait(*, owner: User, run_id: uuid.UUID, seconds: float, poll_interval: float = 0.1) -> Run:
    """The run once finished, or as it is after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        run = run_get(owner=owner, run_id=str(run_id))
        if run.is_finished or time.monotonic() >= deadline:
            return run
        time.sleep(min(poll_interval, max(0.0, deadline - time.monotonic())))


# How long the health check waits for one provider's model listing: a monitor must not hang on one.
PROVIDER_PROBE_TIMEOUT = 3.0


def provider_states() -> dict[str, str]:
    """Each provider's state by name, for GET /api/v1/health?providers=1 (registered in apps.py):
    `ok` (it answered its model listing), `disabled`, `not checked (<kind>)`, or `error: <code>`.

    Enabled openai-compatible providers are asked all at once, each for at most PROVIDER_PROBE_TIMEOUT
    seconds, and without their key (which stays in runs.providers): any HTTP answer, a 401 too, shows
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
