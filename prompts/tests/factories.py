from typing import Any

import factory

from accounts.models import Project
from accounts.tests.factories import UserFactory
from prompts import services
from prompts.models import Prompt, PromptVersion


class PromptFactory(factory.django.DjangoModelFactory):
    """A prompt with no versions; use `prompt_with_version` for a usable one."""

    class Meta:
        model = Prompt

    class Params:
        # Who made it: the row goes to that user's personal project, with them as its creator.
        owner = factory.SubFactory(UserFactory)

    project = factory.LazyAttribute(lambda prompt: prompt.owner.personal_project)
    created_by = factory.LazyAttribute(lambda prompt: prompt.owner)
    name = factory.Sequence(lambda n: f"prompt-{n}")


def prompt_with_version(owner, name="greet", **version_fields) -> tuple[Prompt, PromptVersion]:
    """A prompt created through the service, as the API would, with its version 1: made by `owner` (a
    User) in their personal project, or in `owner` if it is a Project (made by no one)."""
    fields: dict[str, Any] = {
        "template": "Say hello to {{ name }}.",
        "variables": {"name": {"type": "string"}},
        "model": "local/smollm2",
        "params": {"max_tokens": 32},
    }
    fields.update(version_fields)
    if isinstance(owner, Project):
        return services.prompt_create(project=owner, created_by=None, name=name, **fields)
    return services.prompt_create(project=owner.personal_project, created_by=owner, name=name, **fields)
