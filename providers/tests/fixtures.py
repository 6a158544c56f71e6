"""Fixtures for the provider layer: a real OpenAI-compatible server and Provider rows pointing at it.

A pytest plugin (loaded by the root conftest), so every app's tests can use them."""

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import cache

from providers.models import Provider
from providers.tests.openai_server import OpenAIServer

ProviderFactory = Callable[..., Provider]


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    server = OpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    """An empty cache before and after the test: check_model caches model lists, and a test must not
    see another test's server. Used autouse by the conftest of the apps that call providers."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def provider_factory(db: Any, openai_server: OpenAIServer) -> ProviderFactory:
    """Creates a Provider row; by default an openai-compatible one pointing at `openai_server`.
    A name that exists (such as the tests' `local`) is updated to these fields instead."""

    def create(**fields: Any) -> Provider:
        values: dict[str, Any] = {
            "name": "testllm",
            "kind": Provider.Kind.OPENAI_COMPATIBLE,
            "base_url": openai_server.url,
            "timeout": 5.0,
        }
        values.update(fields)
        name = values.pop("name")
        provider, _ = Provider.objects.update_or_create(name=name, defaults=values)
        return provider

    return create


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on (bound then released), for connection-refused tests."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
