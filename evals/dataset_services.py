"""Writes for datasets and their examples.

Every change of a dataset's examples is a new numbered DatasetVersion: `examples_append` adds
examples (streamed: validated as they are read and written in chunks, all in one transaction, so a
bad row writes nothing), `examples_remove` marks examples removed from the new version on (a
conditional UPDATE of `removed_in`; their content never changes). Both take the dataset's row lock
to hand out the next version number and positions, so concurrent changes queue up, with no gap or
duplicate in the numbers.
"""

import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_slug
from django.db import IntegrityError, transaction
from django.db.models.deletion import ProtectedError, RestrictedError
from django.utils import timezone

from accounts.models import Project, User
from evals.dataset_files import ExampleRow, row_from_object
from evals.models import Dataset, DatasetVersion, Example, Experiment, LabelGate
from llmops.errors import Conflict, FieldErrors, NotFound, ValidationFailed
from runs.models import Run

logger = logging.getLogger(__name__)

MAX_NAME_LENGTH = 100
MAX_DESCRIPTION_LENGTH = 10_000
MAX_NOTE_LENGTH = 500
MAX_TAGS = 50
MAX_TAG_LENGTH = 100
# Examples one append (an upload) may add, and bad rows reported at most (validation stops there).
MAX_EXAMPLES_PER_APPEND = 100_000
MAX_REPORTED_ERRORS = 50
MAX_REMOVED_PER_CALL = 10_000
# Rows per INSERT while appending.
INSERT_CHUNK = 500


def _name_check(name: Any) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        raise ValidationFailed("Invalid name.", fields={"name": [f"A slug of 1 to {MAX_NAME_LENGTH} characters."]})
    try:
        validate_slug(name)
    except DjangoValidationError:
        raise ValidationFailed(
            "Invalid name.", fields={"name": ["Letters, digits, underscores or hyphens only."]}
        ) from None
    return name


def _description_check(description: Any) -> str:
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH:
        raise ValidationFailed(
            "Invalid description.",
            fields={"description": [f"A string of at most {MAX_DESCRIPTION_LENGTH} characters."]},
        )
    return description


def _note_check(note: Any) -> str:
    if not isinstance(note, str) or len(note) > MAX_NOTE_LENGTH:
        raise ValidationFailed("Invalid note.", fields={"note": [f"A string of at most {MAX_NOTE_LENGTH} characters."]})
    return note


def _own(dataset: Dataset, project: Project) -> None:
    if dataset.project_id != project.pk:
        raise NotFound("Dataset not found.")


def example_row_check(row: ExampleRow) -> FieldErrors:
    """The problems of one row, keyed `examples.<line>.<field>`; empty when it can be stored."""
    if row.problems:
        return row.problems
    where = f"examples.{row.line}"
    problems: FieldErrors = {}
    if not isinstance(row.variables, dict):
        problems[f"{where}.variables"] = ["Must be an object."]
    for name in ("expected_output", "reference"):
        if not isinstance(getattr(row, name), str):
            problems[f"{where}.{name}"] = ["Must be a string."]
    tags = row.tags
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        problems[f"{where}.tags"] = ["Must be a list of strings."]
    elif len(tags) > MAX_TAGS:
        problems[f"{where}.tags"] = [f"At most {MAX_TAGS} tags."]
    elif any(not tag or len(tag) > MAX_TAG_LENGTH for tag in tags):
        problems[f"{where}.tags"] = [f"Each tag is 1 to {MAX_TAG_LENGTH} characters."]
    return problems


def dataset_create(*, project: Project, created_by: User | None, name: str, description: str = "") -> Dataset:
    """Creates an empty dataset (no version yet: the first append makes version 1). 409 `name_taken`."""
    name = _name_check(name)
    description = _description_check(description)
    with transaction.atomic():
        if Dataset.objects.filter(project=project, name=name).exists():
            raise Conflict(
                f"This project already has a dataset named {name!r}.",
                fields={"name": ["A dataset with this name exists."]},
                code="name_taken",
            )
        try:
            with transaction.atomic():
                dataset = Dataset.objects.create(
                    project=project, created_by=created_by, name=name, description=description
                )
        except IntegrityError:  # lost a race with a concurrent create of the same name
            raise Conflict(
                f"This project already has a dataset named {name!r}.",
                fields={"name": ["Already exists."]},
                code="name_taken",
            ) from None
    logger.info("dataset created", extra={"dataset_id": str(dataset.pk)})
    return dataset


def dataset_update(*, project: Project, dataset: Dataset, description: str) -> Dataset:
    """Changes the description (the one mutable field: examples change only through versions)."""
    _own(dataset, project)
    dataset.description = _description_check(description)
    with transaction.atomic():
        dataset.save(update_fields=["description", "updated_at"])
    return dataset


def dataset_delete(*, project: Project, dataset: Dataset) -> None:
    """Deletes the dataset, its versions and examples. 409 `dataset_in_use` while an experiment or a
    label gate names it (their results name its examples)."""
    _own(dataset, project)
    in_use = Conflict("An experiment or a label gate uses this dataset; it cannot be deleted.", code="dataset_in_use")
    with transaction.atomic():
        if Experiment.objects.filter(dataset=dataset).exists() or LabelGate.objects.filter(dataset=dataset).exists():
            raise in_use
        try:
            with transaction.atomic():
                dataset.delete()
        except (ProtectedError, RestrictedError):  # one made since the check above
            raise in_use from None
    logger.info("dataset deleted", extra={"dataset_id": str(dataset.pk)})


def _lock(dataset: Dataset, project: Project) -> Dataset:
    """The dataset's row, locked for the rest of the transaction."""
    # The UPDATE takes the write lock on SQLite too, where select_for_update is a no-op.
    if not Dataset.objects.filter(pk=dataset.pk, project=project).update(updated_at=timezone.now()):
        raise NotFound("Dataset not found.")
    return Dataset.objects.select_for_update().get(pk=dataset.pk)


def _latest_count(dataset: Dataset) -> int:
    latest = DatasetVersion.objects.filter(dataset=dataset, number=dataset.latest_version_number).first()
    return latest.example_count if latest is not None else 0


def _new_version(
    locked: Dataset, *, created_by: User | None, note: str, added: int, removed: int, last_position: int
) -> DatasetVersion:
    number = locked.latest_version_number + 1
    version = DatasetVersion.objects.create(
        dataset=locked,
        number=number,
        example_count=_latest_count(locked) + added - removed,
        added_count=added,
        removed_count=removed,
        note=note,
        created_by=created_by,
    )
    locked.latest_version_number = number
    locked.last_position = last_position
    locked.save(update_fields=["latest_version_number", "last_position", "updated_at"])
    return version


def _as_row(index: int, item: ExampleRow | Mapping[str, Any]) -> ExampleRow:
    return item if isinstance(item, ExampleRow) else row_from_object(index, item)


def examples_append(
    *,
    project: Project,
    dataset: Dataset,
    examples: Iterable[ExampleRow | Mapping[str, Any]],
    created_by: User | None,
    note: str = "",
    source_runs: Mapping[int, Run] | None = None,
) -> DatasetVersion:
    """Appends `examples` (rows of evals.dataset_files, or inline objects; streamed: read once, never
    all held) as ONE new version of the dataset, in the order given.

    Every row is checked (example_row_check); a bad row writes nothing: up to MAX_REPORTED_ERRORS
    bad rows are reported in the error's fields, keyed `examples.<line>.<field>`. `source_runs`
    maps a row's line to the run it was saved from (example_from_run).
    """
    _own(dataset, project)
    note = _note_check(note)
    errors: FieldErrors = {}
    bad_rows = 0
    read = 0
    with transaction.atomic():
        locked = _lock(dataset, project)
        number = locked.latest_version_number + 1
        position = locked.last_position
        chunk: list[Example] = []
        for index, item in enumerate(examples):
            read += 1
            if read > MAX_EXAMPLES_PER_APPEND:
                raise ValidationFailed(
                    f"Too many examples: at most {MAX_EXAMPLES_PER_APPEND} at once.",
                    fields={"examples": [f"At most {MAX_EXAMPLES_PER_APPEND} examples."]},
                    code="too_many_examples",
                )
            row = _as_row(index, item)
            problems = example_row_check(row)
            if problems:
                bad_rows += 1
                errors.update(problems)
                if bad_rows >= MAX_REPORTED_ERRORS:
                    break
                continue
            if errors:
                continue  # failing already: only validate the rest
            position += 1
            chunk.append(
                Example(
                    dataset=locked,
                    position=position,
                    added_in=number,
                    variables=row.variables,
                    expected_output=row.expected_output,
                    reference=row.reference,
                    tags=row.tags,
                    source_run=(source_runs or {}).get(row.line),
                    created_by=created_by,
                )
            )
            if len(chunk) >= INSERT_CHUNK:
                Example.objects.bulk_create(chunk)
                chunk = []
        if errors:
            more = " (the first ones; validation stopped there)" if bad_rows >= MAX_REPORTED_ERRORS else ""
            raise ValidationFailed(
                f"{bad_rows} example(s) are invalid{more}; nothing was added.", fields=errors, code="invalid_examples"
            )
        if read == 0:
            raise ValidationFailed(
                "No examples given.", fields={"examples": ["At least one example."]}, code="no_examples"
            )
        Example.objects.bulk_create(chunk)
        version = _new_version(locked, created_by=created_by, note=note, added=read, removed=0, last_position=position)
    dataset.latest_version_number, dataset.last_position = locked.latest_version_number, locked.last_position
    logger.info("examples appended", extra={"dataset_id": str(dataset.pk), "version": number, "added": read})
    return version


def examples_remove(
    *, project: Project, dataset: Dataset, ids: Iterable[Any], created_by: User | None, note: str = ""
) -> DatasetVersion:
    """Removes examples (by id) from the next version on, as ONE new version; earlier versions keep
    them. Each id must name an example of the dataset's latest version (else a 400 naming `ids.<i>`)."""
    _own(dataset, project)
    note = _note_check(note)
    wanted: dict[uuid.UUID, int] = {}
    problems: FieldErrors = {}
    for index, value in enumerate(ids):
        try:
            pk = uuid.UUID(str(value)) if isinstance(value, str) else None
        except ValueError:
            pk = None
        if pk is None:
            problems[f"ids.{index}"] = ["Must be an example id (a UUID)."]
        elif pk not in wanted:
            wanted[pk] = index
        if len(wanted) > MAX_REMOVED_PER_CALL:
            raise ValidationFailed("Too many ids.", fields={"ids": [f"At most {MAX_REMOVED_PER_CALL}."]})
    if problems:
        raise ValidationFailed("Invalid example ids.", fields=problems)
    if not wanted:
        raise ValidationFailed("No examples given.", fields={"ids": ["At least one example id."]})
    with transaction.atomic():
        locked = _lock(dataset, project)
        present = set(
            Example.objects.filter(dataset=locked, pk__in=list(wanted), removed_in__isnull=True).values_list(
                "pk", flat=True
            )
        )
        missing = {
            f"ids.{index}": ["No such example in the dataset's latest version."]
            for pk, index in wanted.items()
            if pk not in present
        }
        if missing:
            raise ValidationFailed("Some examples are not in the dataset's latest version.", fields=missing)
        number = locked.latest_version_number + 1
        # Conditional on still being present: under the row lock nothing else removes them meanwhile.
        removed = Example.objects.filter(dataset=locked, pk__in=present, removed_in__isnull=True).update(
            removed_in=number, updated_at=timezone.now()
        )
        version = _new_version(
            locked, created_by=created_by, note=note, added=0, removed=removed, last_position=locked.last_position
        )
    dataset.latest_version_number = locked.latest_version_number
    logger.info("examples removed", extra={"dataset_id": str(dataset.pk), "version": number, "removed": removed})
    return version


def _run_check(*, project: Project, run: Run | Any, field: str) -> Run:
    """The project's succeeded run, by row or id; a 400 naming `field` otherwise."""
    run_id = run.pk if isinstance(run, Run) else run
    try:
        pk = uuid.UUID(str(run_id))
    except ValueError:
        raise ValidationFailed("No such run.", fields={field: ["No such run in this project."]}) from None
    found = Run.objects.filter(project=project, pk=pk).first()
    if found is None:
        raise ValidationFailed("No such run.", fields={field: ["No such run in this project."]})
    if found.status != Run.Status.SUCCEEDED:
        raise ValidationFailed(
            f"The run is {found.status}; only a succeeded run can be saved as an example.",
            fields={field: [f"Not succeeded (status: {found.status})."]},
            code="run_not_succeeded",
        )
    return found


def examples_from_runs(
    *,
    project: Project,
    dataset: Dataset,
    runs: Iterable[Run | Any],
    created_by: User | None,
    tags: list[str] | None = None,
    note: str = "",
) -> DatasetVersion:
    """Saves runs as examples, one new version: each run's variables, its output as the expected
    output, `tags`, and the run as `source_run`. Every run must be the project's and succeeded
    (else a 400 naming `runs.<i>`, and nothing is saved)."""
    checked = [_run_check(project=project, run=run, field=f"runs.{index}") for index, run in enumerate(runs)]
    rows = [
        ExampleRow(index, variables=run.variables, expected_output=run.output, tags=list(tags or []))
        for index, run in enumerate(checked)
    ]
    return examples_append(
        project=project,
        dataset=dataset,
        examples=rows,
        created_by=created_by,
        note=note or f"Saved from {len(rows)} run(s).",
        source_runs=dict(enumerate(checked)),
    )


def example_from_run(
    *,
    project: Project,
    dataset: Dataset,
    run: Run | Any,
    created_by: User | None,
    expected_output: str | None = None,
    tags: list[str] | None = None,
    reference: str = "",
) -> tuple[DatasetVersion, Example]:
    """ "Save this run as an example": a new version with one example made of the run's variables and
    (unless `expected_output` is given) its output, `tags`, `reference`, and the run as its source.
    The run must be the project's and succeeded (else a 400 naming `run`)."""
    found = _run_check(project=project, run=run, field="run")
    row = ExampleRow(
        0,
        variables=found.variables,
        expected_output=found.output if expected_output is None else expected_output,
        reference=reference,
        tags=[] if tags is None else tags,
    )
    problems = example_row_check(row)
    if problems:  # named by the request's fields, not an index
        raise ValidationFailed(
            "Invalid example.", fields={key.removeprefix("examples.0."): value for key, value in problems.items()}
        )
    with transaction.atomic():
        version = examples_append(
            project=project,
            dataset=dataset,
            examples=[row],
            created_by=created_by,
            note=f"Saved from run {found.pk}.",
            source_runs={0: found},
        )
        example = Example.objects.get(dataset=dataset, added_in=version.number)
    return version, example
