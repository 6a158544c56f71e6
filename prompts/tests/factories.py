from typing import Any

import factory

from accounts.tests.factories import UserFactory
from prompts import services
from prompts.models import Prompt, PromptVersion


class PromptFactory(factory.django.DjangoModelFactory):
    """A prompt with no versions; use `prompt_with_version` for a usable one."""

    class Meta:
        model = Prompt

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"prompt-{n}")


def prompt_with_version(owner, name="greet", **version_fields) -> tuple[Prompt, PromptVersion]:
    """A prompt created through the service, as the API would, with its version 1."""
    fields: dict[str, Any] = {
        "template": "Say hello to {{ name }}.",
        "variables": {"name": {"type": "string"}},
        "model": "local/smollm2",
        "params": {"max_tokens": 32},
    }
    fields.update(version_fields)
    return services.prompt_create(owner=owner, name=name, **fields)
