"""Fixtures shared by every app's tests: two users (alice, bob) with API clients."""

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.tests.factories import UserFactory

pytest_plugins = ["runs.tests.worker", "providers.tests.fixtures", "llmops.tests.browser"]


@pytest.fixture
def alice(db):
    return UserFactory(username="alice")


@pytest.fixture
def bob(db):
    return UserFactory(username="bob")


def _client_for(user) -> APIClient:
    _, plaintext = account_services.api_key_create(project=user.personal_project, created_by=user, name="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    client.plaintext_key = plaintext  # type: ignore[attr-defined]
    return client


@pytest.fixture
def alice_client(alice) -> APIClient:
    return _client_for(alice)


@pytest.fixture
def bob_client(bob) -> APIClient:
    return _client_for(bob)


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture(autouse=True)
def _local_provider(request):
    """The `local` provider exists in every test that touches the database, as `make run` registers
    it: a version must name a known provider, and most tests' versions use `local/smollm2`. It points
    at a closed port; tests that run models point it at their own server through provider_factory.
    """
    if "transactional_db" in request.fixturenames:
        request.getfixturevalue("transactional_db")
    elif "db" in request.fixturenames:
        request.getfixturevalue("db")
    elif request.node.get_closest_marker("django_db") is None:
        return
    from providers.tests.factories import ProviderFactory

    ProviderFactory(name="local", base_url="http://127.0.0.1:9/v1")


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    """Tests create users by the hundred; the production hasher's deliberate cost would dominate."""
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield
