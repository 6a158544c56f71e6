import pytest


@pytest.fixture(autouse=True)
def _fresh_cache(fresh_cache: None) -> None:
    """Model lists cached by one test's provider must not leak into the next (providers.tests.fixtures)."""


@pytest.fixture(autouse=True)
def _local_provider() -> None:
    """Overrides the root conftest's: these tests create and count Provider rows themselves."""
