import factory

from accounts.tests.factories import UserFactory
from prompts.tests.factories import prompt_with_version
from runs.models import Batch, BatchItem, Run


class RunFactory(factory.django.DjangoModelFactory):
    """A finished run of a fresh prompt's version 1 (no provider call is made)."""

    class Meta:
        model = Run

    class Params:
        # Who made it: the row goes to that user's personal project, with them as its creator.
        owner = factory.SubFactory(UserFactory)

    project = factory.LazyAttribute(lambda run: run.owner.personal_project)
    created_by = factory.LazyAttribute(lambda run: run.owner)
    prompt_version = factory.LazyAttribute(
        lambda run: prompt_with_version(run.project, name=f"p-{Run.objects.count()}")[1]
    )
    rendered_input = factory.LazyFunction(lambda: [{"role": "user", "content": "Say hello to Ada."}])
    provider = "testllm"
    model = "test-model"
    status = Run.Status.SUCCEEDED
    output = "Hello Ada."
    prompt_tokens = 4
    completion_tokens = 2
    total_tokens = 6


class BatchFactory(factory.django.DjangoModelFactory):
    """A queued batch of a fresh prompt's version 1 with two pending items (nothing is dispatched)."""

    class Meta:
        model = Batch
        skip_postgeneration_save = True  # the items hook writes the items, not the batch

    class Params:
        # Who made it: the row goes to that user's personal project, with them as its creator.
        owner = factory.SubFactory(UserFactory)

    project = factory.LazyAttribute(lambda batch: batch.owner.personal_project)
    created_by = factory.LazyAttribute(lambda batch: batch.owner)
    prompt_version = factory.LazyAttribute(
        lambda batch: prompt_with_version(batch.project, name=f"b-{Batch.objects.count()}")[1]
    )
    item_count = 2

    @factory.post_generation
    def items(batch, create, extracted, **kwargs):
        if create:
            BatchItem.objects.bulk_create(
                [BatchItem(batch=batch, line=line, key=str(line), variables={"name": f"n{line}"}) for line in (0, 1)]
            )
