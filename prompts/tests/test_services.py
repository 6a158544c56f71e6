"""prompts.services: numbering, immutability, archiving, labels; concurrency on PostgreSQL."""

import threading

import pytest
from django.db import connection, connections

from accounts.tests.factories import UserFactory
from llmops.errors import Conflict, ValidationFailed
from prompts import services
from prompts.models import ImmutableVersionError, LabelMove, Prompt, PromptLabel, PromptVersion
from prompts.tests.factories import prompt_with_version

requires_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks and real concurrency need PostgreSQL"
)


def _next_version(prompt, user=None, text="Hi {{ name }}, v-next.", **fields):
    return services.prompt_version_create(
        prompt=prompt,
        created_by=user,
        model="local/smollm2",
        template=text,
        variables={"name": {"type": "string"}},
        **fields,
    )


def test_prompt_create_makes_version_1(alice):
    prompt, version = prompt_with_version(alice, name="greet", commit_message="first")

    assert version.number == 1
    assert version.kind == PromptVersion.Kind.TEXT
    assert version.created_by == alice
    assert version.commit_message == "first"
    assert Prompt.objects.get(pk=prompt.pk).latest_version_number == 1
    assert list(PromptVersion.objects.filter(prompt=prompt).values_list("number", flat=True)) == [1]


def test_versions_are_numbered_1_2_3(alice):
    prompt, _ = prompt_with_version(alice)

    numbers = [_next_version(prompt, alice).number for _ in range(2)]

    assert numbers == [2, 3]
    assert sorted(PromptVersion.objects.filter(prompt=prompt).values_list("number", flat=True)) == [1, 2, 3]
    assert Prompt.objects.get(pk=prompt.pk).latest_version_number == 3
    assert prompt.latest_version_number == 3


def test_numbering_is_per_prompt(alice):
    first, _ = prompt_with_version(alice, name="first")
    second, _ = prompt_with_version(alice, name="second")

    _next_version(first)

    assert _next_version(second).number == 2


def test_an_invalid_version_takes_no_number(alice):
    prompt, _ = prompt_with_version(alice)

    with pytest.raises(ValidationFailed):
        _next_version(prompt, text="{{ undeclared }}")

    assert Prompt.objects.get(pk=prompt.pk).latest_version_number == 1
    assert _next_version(prompt).number == 2


def test_prompt_create_with_an_invalid_version_leaves_nothing_behind(alice):
    with pytest.raises(ValidationFailed):
        prompt_with_version(alice, name="broken", template="{{ nope }}")

    assert not Prompt.objects.filter(name="broken").exists()


def test_prompt_create_refuses_a_taken_name(alice):
    prompt_with_version(alice, name="greet")

    with pytest.raises(Conflict) as caught:
        prompt_with_version(alice, name="greet")

    assert caught.value.code == "name_taken"
    assert Prompt.objects.filter(project=alice.personal_project, name="greet").count() == 1


def test_archived_prompt_takes_no_new_versions(alice):
    prompt, _ = prompt_with_version(alice)
    services.prompt_archive(prompt=prompt)

    with pytest.raises(Conflict) as caught:
        _next_version(prompt)

    assert caught.value.code == "prompt_archived"
    assert PromptVersion.objects.filter(prompt=prompt).count() == 1
    assert Prompt.objects.get(pk=prompt.pk).latest_version_number == 1


def test_archiving_twice_keeps_the_first_time(alice):
    prompt, _ = prompt_with_version(alice)
    services.prompt_archive(prompt=prompt)
    first = Prompt.objects.get(pk=prompt.pk).archived_at

    services.prompt_archive(prompt=Prompt.objects.get(pk=prompt.pk))

    assert Prompt.objects.get(pk=prompt.pk).archived_at == first is not None


def test_saving_an_existing_version_raises_and_changes_nothing(alice):
    _, version = prompt_with_version(alice, template="Original {{ name }}.")
    version.template = "Tampered {{ name }}."
    version.commit_message = "sneaky"

    with pytest.raises(ImmutableVersionError):
        version.save()
    with pytest.raises(ImmutableVersionError):
        PromptVersion.objects.get(pk=version.pk).save(update_fields=["commit_message"])

    stored = PromptVersion.objects.get(pk=version.pk)
    assert stored.template == "Original {{ name }}."
    assert stored.commit_message == ""


@pytest.mark.parametrize(
    ("fields", "offending"),
    [
        ({"model": "no-slash"}, "model"),
        ({"model": "local/smollm2\n"}, "model"),  # `$` alone would let a trailing newline through
        ({"variables": {"name\n": {}}, "template": "Hi"}, "variables.name\n"),
        ({"params": {"temperature": 3}}, "params.temperature"),
        ({"params": {"max_tokens": True}}, "params.max_tokens"),
        ({"params": {"colour": "red"}}, "params.colour"),
        ({"params": {"stop": ["a", ""]}}, "params.stop"),
        ({"template": "   "}, "template"),
        ({"template": None, "messages": []}, "messages"),
        ({"template": None}, "template"),
        ({"template": None, "messages": [{"role": "robot", "content": "x"}]}, "messages.0"),
        ({"template": None, "messages": [{"role": "user"}]}, "messages.0"),
    ],
)
def test_invalid_version_fields_are_named(alice, fields, offending):
    prompt, _ = prompt_with_version(alice)
    version_fields = {"model": "local/smollm2", "template": "Hi {{ name }}", "variables": {"name": {}}, **fields}

    with pytest.raises(ValidationFailed) as caught:
        services.prompt_version_create(prompt=prompt, created_by=alice, **version_fields)

    assert offending in caught.value.fields
    assert PromptVersion.objects.filter(prompt=prompt).count() == 1


def test_omitted_model_variables_and_params_come_from_the_latest_version(alice):
    prompt, v1 = prompt_with_version(alice, params={"max_tokens": 32, "temperature": 0.5})

    v2 = services.prompt_version_create(prompt=prompt, created_by=alice, template="Hello {{ name }}!")

    assert (v2.number, v2.template) == (2, "Hello {{ name }}!")
    assert (v2.model, v2.variables, v2.params) == (v1.model, v1.variables, {"max_tokens": 32, "temperature": 0.5})


def test_based_on_names_the_version_to_take_them_from(alice):
    prompt, v1 = prompt_with_version(alice)
    _next_version(prompt, alice, params={"seed": 7})

    v3 = services.prompt_version_create(prompt=prompt, created_by=alice, template="Yo {{ name }}", based_on=1)
    v4 = services.prompt_version_create(prompt=prompt, created_by=alice, template="Hey {{ name }}")

    assert v3.params == v1.params == {"max_tokens": 32}
    assert v4.params == v3.params  # the latest is now v3


def test_based_on_a_missing_version_writes_nothing(alice):
    prompt, _ = prompt_with_version(alice)

    with pytest.raises(ValidationFailed) as caught:
        services.prompt_version_create(prompt=prompt, created_by=alice, template="Hi {{ name }}", based_on=5)

    assert set(caught.value.fields) == {"based_on"}
    assert Prompt.objects.get(pk=prompt.pk).latest_version_number == 1


def test_a_first_version_without_a_model_is_refused(alice):
    with pytest.raises(ValidationFailed) as caught:
        services.prompt_create(project=alice.personal_project, created_by=alice, name="nomodel", template="Hi")

    assert set(caught.value.fields) == {"model"}
    assert not Prompt.objects.filter(name="nomodel").exists()


def test_label_move_creates_moves_and_records_history(alice):
    prompt, v1 = prompt_with_version(alice)
    v2 = _next_version(prompt, alice)

    services.label_move(prompt=prompt, label="production", version_number=1, moved_by=alice)
    services.label_move(prompt=prompt, label="production", version_number=2, moved_by=alice)
    services.label_move(prompt=prompt, label="production", version_number=1, moved_by=None)  # rollback

    assert PromptLabel.objects.get(prompt=prompt, name="production").version == v1
    moves = list(LabelMove.objects.filter(prompt=prompt).order_by("created_at"))
    assert [(m.from_version, m.to_version, m.moved_by) for m in moves] == [
        (None, v1, alice),
        (v1, v2, alice),
        (v2, v1, None),
    ]


def test_label_move_to_the_same_version_records_nothing(alice):
    prompt, _ = prompt_with_version(alice)
    services.label_move(prompt=prompt, label="staging", version_number=1, moved_by=alice)

    services.label_move(prompt=prompt, label="staging", version_number=1, moved_by=alice)

    assert LabelMove.objects.filter(prompt=prompt).count() == 1


def test_label_move_refuses_latest_and_missing_versions(alice):
    prompt, _ = prompt_with_version(alice)

    with pytest.raises(ValidationFailed) as latest:
        services.label_move(prompt=prompt, label="latest", version_number=1, moved_by=alice)
    with pytest.raises(ValidationFailed) as missing:
        services.label_move(prompt=prompt, label="production", version_number=2, moved_by=alice)

    assert set(latest.value.fields) == {"label"}
    assert set(missing.value.fields) == {"version"}
    assert not PromptLabel.objects.exists()
    assert not LabelMove.objects.exists()


def test_label_move_cannot_point_at_another_prompts_version(alice):
    prompt, _ = prompt_with_version(alice, name="one")
    other, _ = prompt_with_version(alice, name="two")
    _next_version(other)

    with pytest.raises(ValidationFailed):
        services.label_move(prompt=prompt, label="production", version_number=2, moved_by=alice)

    assert not PromptLabel.objects.filter(prompt=prompt).exists()


def _run_in_threads(count, target):
    """Runs `target(index)` in `count` threads started together; returns what each raised (or None)."""
    barrier = threading.Barrier(count)
    errors: list[BaseException | None] = [None] * count

    def worker(index):
        try:
            barrier.wait(timeout=10)
            target(index)
        except BaseException as exc:  # reported to the test below
            errors[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return errors


@pytest.mark.postgres
@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_version_creation_has_no_gaps_or_duplicates():
    owner = UserFactory.create(username="racer")
    prompt, _ = prompt_with_version(owner, name="contended")
    threads, per_thread = 8, 3

    def create_versions(index):
        for n in range(per_thread):
            _next_version(Prompt.objects.get(pk=prompt.pk), owner, text=f"Thread {index} #{n} {{{{ name }}}}")

    errors = _run_in_threads(threads, create_versions)

    assert errors == [None] * threads
    total = 1 + threads * per_thread
    numbers = sorted(PromptVersion.objects.filter(prompt=prompt).values_list("number", flat=True))
    assert numbers == list(range(1, total + 1))
    assert Prompt.objects.get(pk=prompt.pk).latest_version_number == total


@pytest.mark.postgres
@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_creation_of_one_name_makes_one_prompt():
    owner = UserFactory.create(username="racer")
    threads = 8

    errors = _run_in_threads(threads, lambda index: prompt_with_version(owner, name="same"))

    assert sum(error is None for error in errors) == 1
    assert all(isinstance(error, Conflict) for error in errors if error is not None), errors
    assert Prompt.objects.filter(project=owner.personal_project, name="same").count() == 1
    assert PromptVersion.objects.filter(prompt__project=owner.personal_project).count() == 1
