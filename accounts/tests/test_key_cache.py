"""The authenticated-key cache (accounts.services.key_rows, a llmops/config_cache.py cache): a second
request reads nothing from the database, and every change to what authenticates a key is seen by the
very next request, in this process and (with Redis) in another one."""

import os

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import keys, project_services, services
from accounts.models import Membership, Role
from accounts.services import APIKeyInvalid
from accounts.tests.factories import UserFactory
from llmops import config_cache
from llmops.tests.processes import django_child

# Committed for real: the invalidation runs when a change commits.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cached(settings):
    settings.CONFIG_CACHE_SECONDS = 30
    services.key_rows.clear()
    yield
    services.key_rows.clear()


@pytest.fixture
def alice_key(alice):
    return services.api_key_create(project=alice.personal_project, created_by=alice, name="mine")


def _queries(raw_key):
    with CaptureQueriesContext(connection) as queries:
        api_key = services.api_key_authenticate(raw_key=raw_key)
    return api_key, len(queries)


def test_the_second_authentication_reads_nothing(cached, alice_key):
    _, plaintext = alice_key
    first, first_queries = _queries(plaintext)
    second, second_queries = _queries(plaintext)

    assert first_queries >= 1 and second_queries == 0
    assert second.pk == first.pk and second.member_role == Role.OWNER
    assert second is not first  # each request its own copy of the shared row


def test_off_reads_the_database_every_time(settings, alice_key):
    settings.CONFIG_CACHE_SECONDS = 0
    _, plaintext = alice_key
    _queries(plaintext)

    assert _queries(plaintext)[1] >= 1


def test_a_wrong_secret_is_refused_from_the_cache_too(cached, alice_key):
    api_key, plaintext = alice_key
    services.api_key_authenticate(raw_key=plaintext)
    assert api_key.prefix in services.key_rows

    with pytest.raises(APIKeyInvalid, match="Invalid API key"):
        services.api_key_authenticate(raw_key=keys.join(api_key.prefix, "not-the-secret"))


def test_revoking_is_seen_by_the_next_request(cached, alice_key):
    api_key, plaintext = alice_key
    services.api_key_authenticate(raw_key=plaintext)

    services.api_key_revoke(api_key=api_key)

    with pytest.raises(APIKeyInvalid, match="revoked"):
        services.api_key_authenticate(raw_key=plaintext)


def test_rotating_refuses_the_old_secret_at_once(cached, alice_key):
    api_key, old = alice_key
    services.api_key_authenticate(raw_key=old)

    _, new = services.api_key_rotate(api_key=api_key)

    with pytest.raises(APIKeyInvalid):
        services.api_key_authenticate(raw_key=old)
    assert services.api_key_authenticate(raw_key=new).pk == api_key.pk


def test_a_role_change_and_a_removal_are_seen_at_once(cached, alice):
    bob = UserFactory(username="bob")
    project = project_services.project_create(name="Team", created_by=alice)
    project_services.member_add(project=project, user=bob, role=Role.ADMIN, acting_role=Role.OWNER)
    _, plaintext = services.api_key_create(project=project, created_by=bob, name="bob's")
    assert services.api_key_authenticate(raw_key=plaintext).member_role == Role.ADMIN

    project_services.member_set_role(project=project, user=bob, role=Role.VIEWER, acting_role=Role.OWNER)
    assert services.api_key_authenticate(raw_key=plaintext).member_role == Role.VIEWER

    project_services.member_remove(project=project, user=bob, acting_role=Role.OWNER)
    with pytest.raises(APIKeyInvalid):
        services.api_key_authenticate(raw_key=plaintext)
    assert not Membership.objects.filter(project=project, user=bob).exists()


def test_a_disabled_user_and_a_project_change_are_seen_at_once(cached, alice, alice_key):
    _, plaintext = alice_key
    project = services.api_key_authenticate(raw_key=plaintext).project
    project_services.project_update(project=project, role=Role.OWNER, protected_labels=["production", "eu"])
    assert services.api_key_authenticate(raw_key=plaintext).project.protected_labels == ["eu", "production"]

    alice.is_active = False
    alice.save(update_fields=["is_active"])

    with pytest.raises(APIKeyInvalid, match="disabled"):
        services.api_key_authenticate(raw_key=plaintext)


def test_a_lost_generation_invalidates_everything(cached, alice_key):
    """Redis restarted empty: the token is gone, a new one is made, no cached row matches it."""
    _, plaintext = alice_key
    services.api_key_authenticate(raw_key=plaintext)

    cache.delete(config_cache.GENERATION_KEY)

    assert _queries(plaintext)[1] >= 1
    assert _queries(plaintext)[1] == 0


def test_an_unreachable_shared_cache_authenticates_from_the_database(cached, alice_key, monkeypatch):
    _, plaintext = alice_key
    services.api_key_authenticate(raw_key=plaintext)

    def down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(cache, "get", down)

    assert _queries(plaintext)[1] >= 1


# --- another process -------------------------------------------------------------------------

_CHILD = """
import sys
from accounts.services import APIKeyInvalid, api_key_authenticate
raw = sys.stdin.readline().strip()
for line in sys.stdin:
    try:
        api_key_authenticate(raw_key=raw)
        print("ok", flush=True)
    except APIKeyInvalid as exc:
        print(f"refused: {exc}", flush=True)
"""


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="invalidation across processes goes through Redis")
def test_a_key_revoked_here_is_refused_at_once_by_another_process(cached, alice_key):
    api_key, plaintext = alice_key
    with django_child(_CHILD, CONFIG_CACHE_SECONDS="300") as child:
        child.send(plaintext)

        assert child.ask() == "ok"  # read from the database, now cached in the child
        assert child.ask() == "ok"  # from its cache

        services.api_key_revoke(api_key=api_key)

        assert child.ask() == "refused: API key has been revoked."
