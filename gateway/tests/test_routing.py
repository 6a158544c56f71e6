"""Fallback models and the response cache through the gateway, with the official `openai` package as
the client against the live server and the real OpenAI-compatible test server as the provider
(`extra_body={"fallbacks": [...], "cache": {"ttl": ...}}`): the response's `model` is the one that
answered, each attempt is on the run, and a cached answer costs nothing and calls no provider."""

import time
from decimal import Decimal

import openai
import pytest
from django.utils import timezone

from accounts import services as account_services
from billing.models import Budget, CostLog, ModelPrice
from providers.tests.openai_server import Behaviour, answer, error, rate_limited, server_error, streamed
from runs.models import Run

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGES = [{"role": "user", "content": "Say hi."}]
BACKUP = {"fallbacks": ["local/backup"]}
CACHED = {"cache": {"ttl": 60}}


@pytest.fixture(autouse=True)
def _fast_retries(settings, fresh_cache):
    settings.RUN_RETRY_BASE_BACKOFF_S = 0.01
    settings.RUN_RETRY_MAX_BACKOFF_S = 0.05


@pytest.fixture
def local(provider_factory, openai_server):
    openai_server.set_models(["test-model", "backup"])
    ModelPrice.objects.create(
        provider="local",
        model="*",
        input_per_mtok=Decimal("1000"),
        output_per_mtok=Decimal("2000"),
        effective_from=timezone.now().date().replace(year=2020),
    )
    return provider_factory(name="local")


@pytest.fixture
def client(live_server, alice, local):
    _, key = account_services.api_key_create(project=alice.personal_project, created_by=alice, name="sdk")
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=key, max_retries=0, timeout=20)


def _call(client, *, extra_body=None, **options):
    return client.chat.completions.create(
        model="local/test-model", messages=options.pop("messages", MESSAGES), extra_body=extra_body, **options
    )


def _sent_models(openai_server):
    return [request.body["model"] for request in openai_server.chat_requests()]


def _log(run):
    return [(entry["attempt"], entry["model"], entry["error_code"]) for entry in run.attempt_log]


# Fallbacks


def test_a_429_is_answered_by_the_fallback_at_once(client, openai_server):
    openai_server.enqueue(rate_limited(retry_after="30"), answer("Backup says hi."))

    started = time.monotonic()
    completion = _call(client, extra_body=BACKUP)

    assert time.monotonic() - started < 10  # the primary's Retry-After was not waited
    assert completion.choices[0].message.content == "Backup says hi."
    assert completion.model == "local/backup"  # the model that answered
    assert _sent_models(openai_server) == ["test-model", "backup"]
    assert all("fallbacks" not in request.body for request in openai_server.chat_requests())
    run = Run.objects.get()
    assert (run.status, run.model, run.attempts) == ("succeeded", "backup", 2)
    assert _log(run) == [(1, "test-model", "rate_limited"), (2, "backup", "")]
    assert CostLog.objects.get(run=run).model == "backup"


def test_a_5xx_is_retried_then_the_fallback_answers(client, openai_server, settings):
    openai_server.enqueue(*[server_error(503)] * settings.RUN_MAX_ATTEMPTS, answer("Backup."))

    completion = _call(client, extra_body=BACKUP)

    assert completion.model == "local/backup"
    assert _sent_models(openai_server) == ["test-model"] * settings.RUN_MAX_ATTEMPTS + ["backup"]
    assert [code for _, _, code in _log(Run.objects.get())] == ["server_error"] * settings.RUN_MAX_ATTEMPTS + [""]


def test_a_wait_too_long_for_a_request_moves_to_the_fallback(client, openai_server, settings):
    settings.RUN_RETRY_MAX_BACKOFF_S = 60  # a Retry-After of 60 s is honoured, and longer than a request waits
    unavailable = Behaviour("status", status=503, headers=(("Retry-After", "60"),), body='{"error": {}}')
    openai_server.enqueue(unavailable, answer("Backup."))

    assert _call(client, extra_body=BACKUP).model == "local/backup"
    assert _sent_models(openai_server) == ["test-model", "backup"]


def test_a_400_is_not_tried_on_the_fallback(client, openai_server):
    openai_server.enqueue(error(400, '{"error": {"message": "Bad temperature."}}'))

    with pytest.raises(openai.BadRequestError) as refused:
        _call(client, extra_body=BACKUP)

    assert refused.value.body["code"] == "upstream_bad_request"
    assert _sent_models(openai_server) == ["test-model"]
    run = Run.objects.get()
    assert (run.status, run.model) == ("failed", "test-model")
    assert _log(run) == [(1, "test-model", "bad_request")]


def test_a_stream_opens_on_the_fallback_when_the_primary_refuses(client, openai_server):
    openai_server.enqueue(rate_limited(retry_after="30"), streamed("one two three"))

    stream = _call(client, extra_body=BACKUP, stream=True)
    chunks = list(stream)

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    assert {chunk.model for chunk in chunks} == {"local/backup"}
    run = Run.objects.get()
    assert (run.status, run.model) == ("succeeded", "backup")
    assert _log(run) == [(1, "test-model", "rate_limited"), (2, "backup", "")]


@pytest.mark.parametrize(
    ("fallbacks", "param"),
    [(["nosuch/model"], "fallbacks.0"), (["local/backup", "local/missing"], "fallbacks.1"), (["x"] * 4, "fallbacks")],
)
def test_a_bad_fallback_is_a_400_naming_it(client, openai_server, fallbacks, param):
    with pytest.raises(openai.BadRequestError) as refused:
        _call(client, extra_body={"fallbacks": fallbacks})

    assert refused.value.body["param"] == param
    assert not Run.objects.exists() and openai_server.chat_requests() == []


# The response cache


def test_an_identical_call_is_answered_from_the_cache(client, openai_server, alice):
    openai_server.enqueue(answer("Cached hello."))
    first = _call(client, temperature=0, extra_body=CACHED)
    Budget.objects.create(project=alice.personal_project, amount=Decimal("0"), window=Budget.Window.MONTH)

    second = _call(client, temperature=0, extra_body=CACHED)

    assert len(openai_server.chat_requests()) == 1  # no provider call for the second
    assert second.choices[0].message.content == first.choices[0].message.content == "Cached hello."
    assert second.usage.total_tokens == first.usage.total_tokens and second.model == "local/test-model"
    assert second.id != first.id
    run = Run.objects.get(pk=second.run_id)
    assert (run.status, run.cached, run.execution, run.attempts) == ("succeeded", True, "inline", 0)
    assert not CostLog.objects.filter(run=run).exists()  # costs nothing: the 0 budget did not refuse it
    with pytest.raises(openai.APIStatusError) as refused:  # while a call the provider would answer is refused
        _call(client, temperature=0, extra_body=CACHED, messages=[{"role": "user", "content": "Other."}])
    assert refused.value.status_code == 402


def test_a_cached_answer_streams_as_one_chunk(client, openai_server):
    _call(client, temperature=0, extra_body=CACHED)

    chunks = list(_call(client, temperature=0, extra_body=CACHED, stream=True, stream_options={"include_usage": True}))

    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert texts == ["Hello from the test server."]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert len(openai_server.chat_requests()) == 1
    assert Run.objects.filter(cached=True).count() == 1


def test_a_streamed_answer_is_stored_for_the_next_call(client, openai_server):
    openai_server.enqueue(streamed("streamed once"))
    list(_call(client, temperature=0, extra_body=CACHED, stream=True))

    assert _call(client, temperature=0, extra_body=CACHED).choices[0].message.content == "streamed once"
    assert len(openai_server.chat_requests()) == 1


@pytest.mark.parametrize(
    "second",
    [
        {"temperature": 0.7, "extra_body": CACHED},  # sampled: not cacheable
        {"temperature": 0, "extra_body": CACHED, "messages": [{"role": "user", "content": "Say hello."}]},
        {"temperature": 0},  # does not ask for the cache
    ],
)
def test_other_calls_are_not_answered_from_the_cache(client, openai_server, second):
    _call(client, temperature=0, extra_body=CACHED)

    _call(client, **second)

    assert len(openai_server.chat_requests()) == 2
    assert not Run.objects.filter(cached=True).exists()


def test_a_cached_answer_expires_with_its_ttl(client, openai_server):
    _call(client, temperature=0, extra_body={"cache": {"ttl": 1}})
    assert Run.objects.get(pk=_call(client, temperature=0, extra_body={"cache": {"ttl": 1}}).run_id).cached

    time.sleep(1.2)
    _call(client, temperature=0, extra_body={"cache": {"ttl": 1}})

    assert len(openai_server.chat_requests()) == 2


def test_a_bad_cache_is_a_400_naming_it(client, openai_server):
    with pytest.raises(openai.BadRequestError) as refused:
        _call(client, temperature=0, extra_body={"cache": {"ttl": 0}})

    assert refused.value.body["param"] == "cache.ttl"
    assert not Run.objects.exists()
