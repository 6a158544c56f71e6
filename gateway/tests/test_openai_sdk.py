"""The gateway with the official `openai` package as its client, against the live server, the provider
being the real OpenAI-compatible test server: plain and streamed calls, managed prompts, errors as
the SDK's exceptions, the models list; every call recorded and charged as a run."""

import time
from decimal import Decimal

import httpx2
import openai
import pytest
from django.utils import timezone

from accounts import services as account_services
from billing.models import Budget, CostLog, ModelPrice
from prompts import services as prompt_services
from prompts.tests.factories import prompt_with_version
from providers.tests.openai_server import answer, broken_stream, rate_limited, server_error, streamed
from runs.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast_retries(settings):
    settings.RUN_RETRY_BASE_BACKOFF_S = 0.01
    settings.RUN_RETRY_MAX_BACKOFF_S = 0.05


@pytest.fixture
def local(provider_factory, openai_server):
    openai_server.set_models(["test-model"])
    ModelPrice.objects.create(
        provider="local",
        model="test-model",
        input_per_mtok=Decimal("1000"),
        output_per_mtok=Decimal("2000"),
        effective_from=timezone.now().date().replace(year=2020),
    )
    return provider_factory(name="local")


@pytest.fixture
def key(alice):
    _, plaintext = account_services.api_key_create(project=alice.personal_project, created_by=alice, name="sdk")
    return plaintext


@pytest.fixture
def client(live_server, key, local):
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=key, max_retries=0, timeout=20)


@pytest.fixture
def greet(alice):
    prompt, _ = prompt_with_version(
        alice,
        name="greet",
        messages=[{"role": "system", "content": "You greet {{ name }}."}],
        template=None,
        model="local/test-model",
        params={"temperature": 0.5, "max_tokens": 40},
    )
    prompt_services.label_move(prompt=prompt, label="production", version_number=1, moved_by=alice)
    return prompt


def test_a_model_call_is_answered_and_recorded_as_a_charged_run(client, openai_server):
    openai_server.set_default(answer("Hi there!"))

    completion = client.chat.completions.create(
        model="local/test-model", messages=[{"role": "user", "content": "Say hi."}], temperature=0
    )

    assert completion.choices[0].message.content == "Hi there!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens > 0
    assert completion.model == "local/test-model"
    run = Run.objects.get()
    assert (run.status, run.execution, run.prompt_version, run.attempts) == ("succeeded", "inline", None, 1)
    assert run.rendered_input == [{"role": "user", "content": "Say hi."}]
    assert run.params["temperature"] == 0 and run.output == "Hi there!"
    assert completion.id == f"chatcmpl-{run.pk.hex}"
    assert CostLog.objects.get(run=run).total_cost > 0


def test_a_managed_prompt_renders_its_variables_and_takes_the_request_messages_after(client, openai_server, greet):
    completion = client.chat.completions.create(
        model="prompt:greet@production",
        messages=[{"role": "user", "content": "And now?"}],
        max_tokens=12,
        extra_body={"variables": {"name": "Ada"}},
    )

    sent = openai_server.chat_requests()[-1].body
    assert sent["messages"] == [
        {"role": "system", "content": "You greet Ada."},
        {"role": "user", "content": "And now?"},
    ]
    assert sent["temperature"] == 0.5 and sent["max_tokens"] == 12  # the request's parameter wins
    run = Run.objects.get()
    assert run.prompt_version.number == 1 and run.variables == {"name": "Ada"}
    assert completion.choices[0].message.content == "Hello from the test server."


@pytest.mark.parametrize("model", ["prompt:greet", "prompt:greet@1", "prompt:greet@latest"])
def test_a_prompt_by_latest_number_or_label(client, greet, model):
    client.chat.completions.create(model=model, extra_body={"variables": {"name": "Bo"}}, messages=[])

    assert Run.objects.get().rendered_input == [{"role": "system", "content": "You greet Bo."}]


def test_a_stream_arrives_chunk_by_chunk_and_is_charged_at_its_end(client, openai_server):
    openai_server.set_default(streamed("one two three four five", chunk_delay=0.2))
    started = time.monotonic()
    arrivals: list[tuple[float, str]] = []
    usage = None

    stream = client.chat.completions.create(
        model="local/test-model",
        messages=[{"role": "user", "content": "Count."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append((time.monotonic() - started, chunk.choices[0].delta.content))

    assert "".join(text for _, text in arrivals) == "one two three four five"
    # The first word came while the provider was still generating the rest (4 x 0.2 s after it).
    assert arrivals[0][0] < arrivals[-1][0] - 0.5
    run = Run.objects.get()
    assert run.status == "succeeded" and run.output == "one two three four five"
    assert usage is not None and usage.total_tokens == run.total_tokens and not run.tokens_estimated
    assert CostLog.objects.get(run=run).total_cost > 0


def test_a_stream_its_client_leaves_is_recorded_incomplete_and_charged_for_what_was_made(
    live_server, key, local, openai_server
):
    openai_server.set_default(streamed(" ".join(f"w{i}" for i in range(40)), chunk_delay=0.1))
    body = {"model": "local/test-model", "messages": [{"role": "user", "content": "Go."}], "stream": True}
    with (
        httpx2.Client(timeout=10) as http,
        http.stream(
            "POST", f"{live_server.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as response,
    ):
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
    assert '"w0"' in first

    deadline = time.monotonic() + 15
    run = Run.objects.get()
    while run.status == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
        run.refresh_from_db()
    assert run.status == "incomplete" and run.finish_reason == "client_disconnected"
    assert run.output.startswith("w0") and len(run.output.split()) < 40
    assert run.tokens_estimated and CostLog.objects.get(run=run).completion_tokens > 0


def test_a_provider_that_breaks_off_mid_stream_is_an_error_event_and_a_failed_run(client, openai_server):
    openai_server.set_default(broken_stream("a b c d", after=2))

    stream = client.chat.completions.create(
        model="local/test-model", messages=[{"role": "user", "content": "Go."}], stream=True
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass

    run = Run.objects.get()
    assert run.status == "failed" and "mid-stream" in run.error_message
    assert not CostLog.objects.filter(run=run).exists()


def test_retryable_failures_are_retried_in_the_request(client, openai_server):
    openai_server.enqueue(server_error(503), answer("Second time lucky."))

    completion = client.chat.completions.create(model="local/test-model", messages=[{"role": "user", "content": "x"}])

    assert completion.choices[0].message.content == "Second time lucky."
    assert Run.objects.get().attempts == 2


def test_errors_are_the_sdks_exceptions_with_openais_shape(client, live_server, openai_server, greet, alice):
    messages = [{"role": "user", "content": "x"}]

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="llm_nope", max_retries=0).models.list()
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="local/test-model", messages=messages, temperature=5)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="prompt:nosuch", messages=messages)
    with pytest.raises(openai.BadRequestError) as unsupported:
        client.chat.completions.create(model="local/test-model", messages=messages, tools=[])
    with pytest.raises(openai.BadRequestError) as undeclared:
        client.chat.completions.create(model="prompt:greet", extra_body={"variables": {"nme": "x"}}, messages=[])

    assert bad.value.body["param"] == "temperature" and bad.value.body["type"] == "invalid_request_error"
    assert missing.value.body["param"] == "model" and "nosuch" in missing.value.body["message"]
    assert unsupported.value.body["param"] == "tools"
    assert undeclared.value.body["param"] == "variables.nme"
    assert not Run.objects.exists()  # refused requests leave nothing behind

    openai_server.set_default(rate_limited("3"))
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="local/test-model", messages=messages)
    assert limited.value.response.headers["Retry-After"] == "3"
    assert Run.objects.get().status == "failed"

    openai_server.set_default(server_error(500))
    with pytest.raises(openai.InternalServerError) as upstream:
        client.chat.completions.create(model="local/test-model", messages=messages)
    assert upstream.value.status_code == 502 and upstream.value.body["code"] == "upstream_server_error"


def test_a_budget_refuses_a_call_as_the_api_would(client, alice):
    Budget.objects.create(project=alice.personal_project, amount=Decimal("0"), window=Budget.Window.MONTH)

    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="local/test-model", messages=[{"role": "user", "content": "x"}])

    assert refused.value.status_code == 402 and refused.value.body["type"] == "insufficient_quota"
    assert not Run.objects.exists()


def test_models_lists_the_projects_prompts_and_the_providers_models(client, greet):
    ids = [model.id for model in client.models.list()]

    assert "prompt:greet" in ids and "local/test-model" in ids


def test_a_gateway_run_reads_back_through_the_runs_api(client, alice_client):
    completion = client.chat.completions.create(model="local/test-model", messages=[{"role": "user", "content": "x"}])

    body = alice_client.get(f"/api/v1/runs/{completion.run_id}").json()

    assert body["prompt"] is None and body["prompt_name"] is None and body["version"] is None
    assert body["execution"] == "inline" and body["status"] == "succeeded"
    assert body["cost"]["known"] is True


def test_an_error_names_every_field_at_fault(client):
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model="local/test-model", messages=[{"role": "user", "content": "x"}], temperature=5, top_p=3
        )

    assert set(bad.value.body["fields"]) == {"temperature", "top_p"}
    assert bad.value.body["param"] in bad.value.body["fields"]
