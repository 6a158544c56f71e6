"""Datasets through their services: versions by append and removal (an old version keeps its
examples), all-or-nothing validation keyed by index, name conflicts, deletion refused while an
experiment uses the dataset, and saving runs as examples."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from evals import dataset_selectors, dataset_services
from evals.models import Dataset, DatasetVersion, Example, Experiment
from evals.tests.factories import DatasetFactory, dataset_with_examples
from llmops.errors import Conflict, NotFound, ValidationFailed
from prompts.tests.factories import prompt_with_version
from runs.models import Run
from runs.tests.factories import RunFactory

pytestmark = pytest.mark.django_db


def _rows(*outputs: str) -> list[dict]:
    return [{"variables": {"q": out}, "expected_output": out} for out in outputs]


def _outputs(dataset: Dataset, number: int | None = None) -> list[str]:
    version = dataset_selectors.dataset_version_get(dataset=dataset, number=number)
    return [example.expected_output for example in dataset_selectors.example_list(version=version)]


def test_append_makes_one_version_with_the_rows_in_order(alice):
    project = alice.personal_project
    dataset = dataset_services.dataset_create(project=project, created_by=alice, name="qa")

    version = dataset_services.examples_append(
        project=project, dataset=dataset, examples=_rows("a", "b", "c"), created_by=alice, note="first"
    )

    assert (version.number, version.example_count, version.added_count, version.note) == (1, 3, 3, "first")
    dataset.refresh_from_db()
    assert (dataset.latest_version_number, dataset.last_position) == (1, 3)
    assert list(Example.objects.filter(dataset=dataset).values_list("position", "added_in")) == [(1, 1), (2, 1), (3, 1)]
    assert _outputs(dataset) == ["a", "b", "c"]


def test_old_versions_keep_their_examples_after_append_and_remove(alice):
    project = alice.personal_project
    dataset = dataset_with_examples(project, _rows("a", "b"))
    dataset_services.examples_append(project=project, dataset=dataset, examples=_rows("c"), created_by=alice)
    b = Example.objects.get(dataset=dataset, expected_output="b")

    removed = dataset_services.examples_remove(project=project, dataset=dataset, ids=[str(b.pk)], created_by=alice)

    assert (removed.number, removed.example_count, removed.removed_count) == (3, 2, 1)
    assert _outputs(dataset, 1) == ["a", "b"]
    assert _outputs(dataset, 2) == ["a", "b", "c"]
    assert _outputs(dataset, 3) == ["a", "c"]
    assert _outputs(dataset) == ["a", "c"]
    b.refresh_from_db()
    assert (b.added_in, b.removed_in, b.expected_output) == (1, 3, "b")  # its content never changed


def test_a_bad_row_writes_nothing_and_every_bad_row_is_named_by_index(alice):
    project = alice.personal_project
    dataset = dataset_with_examples(project, _rows("a"))
    rows = [
        {"variables": {"q": "ok"}},
        {"variables": ["not", "an", "object"]},
        {"expected_output": 5, "reference": None},
        {"tags": ["x", 3]},
        {"tags": "x"},
        {"surprise": 1},
        "not an object",
    ]

    with pytest.raises(ValidationFailed) as caught:
        dataset_services.examples_append(project=project, dataset=dataset, examples=rows, created_by=alice)

    assert set(caught.value.fields) == {
        "examples.1.variables",
        "examples.2.expected_output",
        "examples.2.reference",
        "examples.3.tags",
        "examples.4.tags",
        "examples.5.surprise",
        "examples.6",
    }
    dataset.refresh_from_db()
    assert (dataset.latest_version_number, dataset.last_position) == (1, 1)
    assert Example.objects.filter(dataset=dataset).count() == 1
    assert DatasetVersion.objects.filter(dataset=dataset).count() == 1


def test_tags_are_bounded(alice):
    project = alice.personal_project
    dataset = DatasetFactory(owner=alice)

    with pytest.raises(ValidationFailed) as caught:
        dataset_services.examples_append(
            project=project,
            dataset=dataset,
            examples=[{"tags": ["t"] * 51}, {"tags": [""]}, {"tags": ["x" * 101]}],
            created_by=alice,
        )

    assert set(caught.value.fields) == {"examples.0.tags", "examples.1.tags", "examples.2.tags"}


def test_appending_nothing_is_refused(alice):
    dataset = DatasetFactory(owner=alice)

    with pytest.raises(ValidationFailed) as caught:
        dataset_services.examples_append(project=alice.personal_project, dataset=dataset, examples=[], created_by=alice)

    assert caught.value.fields == {"examples": ["At least one example."]}
    assert not DatasetVersion.objects.filter(dataset=dataset).exists()


def test_append_takes_a_generator_and_writes_in_chunks(alice):
    """Rows are read once, as they come, and inserted a chunk at a time (not one INSERT per row)."""
    project = alice.personal_project
    dataset = DatasetFactory(owner=alice)
    count = dataset_services.INSERT_CHUNK * 2 + 1

    with CaptureQueriesContext(connection) as queries:
        version = dataset_services.examples_append(
            project=project,
            dataset=dataset,
            examples=({"variables": {"i": i}} for i in range(count)),
            created_by=alice,
        )

    assert version.example_count == count
    inserts = [q for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "evals_example"')]
    assert 3 <= len(inserts) < count // 10  # (SQLite splits a chunk by its variable limit)


def test_removing_an_example_not_in_the_latest_version_is_refused(alice, bob):
    project = alice.personal_project
    dataset = dataset_with_examples(project, _rows("a", "b"))
    a = Example.objects.get(dataset=dataset, expected_output="a")
    dataset_services.examples_remove(project=project, dataset=dataset, ids=[str(a.pk)], created_by=alice)
    bobs = dataset_with_examples(bob.personal_project, _rows("x"), name="bobs")
    bobs_example = Example.objects.get(dataset=bobs)

    with pytest.raises(ValidationFailed) as caught:
        dataset_services.examples_remove(
            project=project, dataset=dataset, ids=[str(a.pk), "nope", str(bobs_example.pk)], created_by=alice
        )
    assert set(caught.value.fields) == {"ids.1"}

    with pytest.raises(ValidationFailed) as caught:
        dataset_services.examples_remove(
            project=project, dataset=dataset, ids=[str(a.pk), str(bobs_example.pk)], created_by=alice
        )
    assert set(caught.value.fields) == {"ids.0", "ids.1"}
    dataset.refresh_from_db()
    assert dataset.latest_version_number == 2
    bobs_example.refresh_from_db()
    assert bobs_example.removed_in is None


def test_another_projects_dataset_is_not_found_by_the_services(alice, bob):
    dataset = dataset_with_examples(alice.personal_project, _rows("a"))

    with pytest.raises(NotFound):
        dataset_services.examples_append(
            project=bob.personal_project, dataset=dataset, examples=_rows("b"), created_by=bob
        )
    with pytest.raises(NotFound):
        dataset_services.dataset_update(project=bob.personal_project, dataset=dataset, description="mine")
    with pytest.raises(NotFound):
        dataset_services.dataset_delete(project=bob.personal_project, dataset=dataset)
    with pytest.raises(NotFound):
        dataset_selectors.dataset_get(project=bob.personal_project, ref="qa")
    assert Dataset.objects.filter(pk=dataset.pk, description="").exists()
    assert _outputs(dataset) == ["a"]


def test_names_are_unique_per_project_and_slugs(alice, bob):
    dataset_services.dataset_create(project=alice.personal_project, created_by=alice, name="qa")
    dataset_services.dataset_create(project=bob.personal_project, created_by=bob, name="qa")

    with pytest.raises(Conflict) as caught:
        dataset_services.dataset_create(project=alice.personal_project, created_by=alice, name="qa")
    assert caught.value.code == "name_taken"
    with pytest.raises(ValidationFailed) as invalid:
        dataset_services.dataset_create(project=alice.personal_project, created_by=alice, name="not a slug")
    assert set(invalid.value.fields) == {"name"}


def test_delete_is_refused_while_an_experiment_uses_the_dataset(alice):
    project = alice.personal_project
    dataset = dataset_with_examples(project, _rows("a"))
    unused = dataset_with_examples(project, _rows("b"), name="unused")
    prompt, _ = prompt_with_version(project, name="greet")
    Experiment.objects.create(
        project=project,
        prompt=prompt,
        dataset=dataset,
        dataset_version=DatasetVersion.objects.get(dataset=dataset),
    )

    with pytest.raises(Conflict) as caught:
        dataset_services.dataset_delete(project=project, dataset=dataset)
    dataset_services.dataset_delete(project=project, dataset=unused)

    assert caught.value.code == "dataset_in_use"
    assert Example.objects.filter(dataset=dataset).count() == 1
    assert not Dataset.objects.filter(pk=unused.pk).exists()
    assert not Example.objects.filter(dataset_id=unused.pk).exists()


def test_example_from_run_takes_variables_output_and_source(alice):
    project = alice.personal_project
    dataset = dataset_with_examples(project, _rows("a"))
    run = RunFactory(owner=alice, variables={"name": "Ada"}, output="Hello Ada.")

    version, example = dataset_services.example_from_run(
        project=project, dataset=dataset, run=run.pk, created_by=alice, tags=["prod"]
    )

    assert version.number == 2 and version.example_count == 2
    assert (example.variables, example.expected_output, example.tags) == ({"name": "Ada"}, "Hello Ada.", ["prod"])
    assert example.source_run_id == run.pk and example.position == 2 and example.added_in == 2
    _, corrected = dataset_services.example_from_run(
        project=project, dataset=dataset, run=run, created_by=alice, expected_output="Hi, Ada!"
    )
    assert corrected.expected_output == "Hi, Ada!"


@pytest.mark.parametrize("status", [Run.Status.QUEUED, Run.Status.FAILED, Run.Status.CANCELED])
def test_only_a_succeeded_run_is_saved(alice, status):
    dataset = dataset_with_examples(alice.personal_project, _rows("a"))
    run = RunFactory(owner=alice, status=status)

    with pytest.raises(ValidationFailed) as caught:
        dataset_services.example_from_run(project=alice.personal_project, dataset=dataset, run=run, created_by=alice)

    assert set(caught.value.fields) == {"run"}
    assert Example.objects.filter(dataset=dataset).count() == 1


def test_another_projects_run_is_not_saved(alice, bob):
    dataset = dataset_with_examples(alice.personal_project, _rows("a"))
    bobs_run = RunFactory(owner=bob)

    with pytest.raises(ValidationFailed) as caught:
        dataset_services.example_from_run(
            project=alice.personal_project, dataset=dataset, run=bobs_run, created_by=alice
        )

    assert caught.value.fields == {"run": ["No such run in this project."]}
    assert Example.objects.filter(dataset=dataset).count() == 1


def test_examples_from_runs_is_one_version_and_all_or_nothing(alice, bob):
    project = alice.personal_project
    dataset = dataset_with_examples(project, _rows("a"))
    runs = [RunFactory(owner=alice, output=f"out {i}", variables={"i": i}) for i in range(3)]

    version = dataset_services.examples_from_runs(project=project, dataset=dataset, runs=runs, created_by=alice)
    with pytest.raises(ValidationFailed) as caught:
        dataset_services.examples_from_runs(
            project=project, dataset=dataset, runs=[runs[0], RunFactory(owner=bob)], created_by=alice
        )

    assert (version.number, version.added_count) == (2, 3)
    assert _outputs(dataset) == ["a", "out 0", "out 1", "out 2"]
    assert set(caught.value.fields) == {"runs.1"}
    assert Example.objects.filter(dataset=dataset).count() == 4
