"""Fixtures of the experiment tests: datasets written as rows (not through evals.dataset_services, so
these tests depend only on the models), two test servers so two versions answer differently, and
the prompt with versions 1..4 most tests compare."""

from collections.abc import Iterator
from typing import Any

import pytest

from evals.models import Dataset, DatasetVersion, Example
from prompts import services as prompt_services
from prompts.tests.factories import prompt_with_version
from providers.tests.openai_server import OpenAIServer


@pytest.fixture(autouse=True)
def _fresh_cache(fresh_cache: None) -> None:
    """Model lists cached by one test's provider must not leak into the next."""


def make_dataset(project: Any, name: str = "greetings", examples: list[tuple[str, str]] | None = None) -> Dataset:
    """A dataset whose version 1 holds one example per (name variable, expected output)."""
    examples = examples if examples is not None else [(f"n{i}", "yes") for i in range(10)]
    dataset = Dataset.objects.create(project=project, name=name, latest_version_number=1, last_position=len(examples))
    DatasetVersion.objects.create(dataset=dataset, number=1, example_count=len(examples), added_count=len(examples))
    Example.objects.bulk_create(
        Example(dataset=dataset, position=i, added_in=1, variables={"name": variable}, expected_output=expected)
        for i, (variable, expected) in enumerate(examples, start=1)
    )
    return dataset


def dataset_append(dataset: Dataset, examples: list[tuple[str, str]]) -> DatasetVersion:
    """A new version of the dataset: its examples and these."""
    number = dataset.latest_version_number + 1
    start = dataset.last_position
    Example.objects.bulk_create(
        Example(dataset=dataset, position=start + i, added_in=number, variables={"name": v}, expected_output=e)
        for i, (v, e) in enumerate(examples, start=1)
    )
    Dataset.objects.filter(pk=dataset.pk).update(latest_version_number=number, last_position=start + len(examples))
    dataset.refresh_from_db()
    return DatasetVersion.objects.create(dataset=dataset, number=number, added_count=len(examples))


@pytest.fixture
def second_server() -> Iterator[OpenAIServer]:
    server = OpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def two_versions(alice, openai_server, second_server, provider_factory):
    """Prompt `greet` of alice's: versions 1 to 3 on `testllm` (openai_server), version 4 on `otherllm`
    (second_server), so a test scripts what version 3 and version 4 answer apart."""
    provider_factory(name="testllm", timeout=5.0)
    provider_factory(name="otherllm", base_url=second_server.url, timeout=5.0)
    prompt, _ = prompt_with_version(alice, name="greet", model="testllm/test-model")
    for model in ("testllm/test-model", "testllm/test-model", "otherllm/test-model"):
        prompt_services.prompt_version_create(
            prompt=prompt, created_by=alice, template="Say hi to {{ name }}.", model=model
        )
    return prompt
