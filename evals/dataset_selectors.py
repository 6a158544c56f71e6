"""Reads of datasets. Every lookup is scoped to its project: another project's dataset is "not found".

Version N of a dataset holds the examples with `added_in <= N` and `removed_in` NULL or > N.
"""

import uuid
from collections.abc import Iterator

from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from accounts.models import Project
from evals.models import Dataset, DatasetVersion, Example
from llmops.errors import NotFound

# Examples per fetch while exporting or streaming.
CHUNK_SIZE = 500


def dataset_list(*, project: Project) -> QuerySet[Dataset]:
    """The project's datasets by name, each with `example_count`: its latest version's (0 when empty)."""
    latest = DatasetVersion.objects.filter(dataset=OuterRef("pk"), number=OuterRef("latest_version_number"))
    return (
        Dataset.objects.filter(project=project)
        .select_related("created_by")
        .annotate(example_count=Coalesce(Subquery(latest.values("example_count")[:1]), 0))
        .order_by("name")
    )


def dataset_get(*, project: Project, ref: str) -> Dataset:
    """A dataset by UUID or by name."""
    try:
        lookup: dict[str, object] = {"pk": uuid.UUID(str(ref))}
    except ValueError:
        lookup = {"name": ref}
    dataset = dataset_list(project=project).filter(**lookup).first()
    if dataset is None:
        raise NotFound("Dataset not found.")
    return dataset


def dataset_version_list(*, dataset: Dataset) -> QuerySet[DatasetVersion]:
    return DatasetVersion.objects.filter(dataset=dataset).select_related("created_by").order_by("-number")


def dataset_version_get(*, dataset: Dataset, number: int | None = None) -> DatasetVersion:
    """Version `number` of the dataset, or (None) its latest; NotFound naming `version` otherwise."""
    number = dataset.latest_version_number if number is None else number
    version = dataset_version_list(dataset=dataset).filter(number=number).first()
    if version is None:
        message = "The dataset has no versions yet." if number == 0 else f"Version {number} does not exist."
        raise NotFound(message, fields={"version": ["No such version of this dataset."]})
    version.dataset = dataset  # the caller's row: no query for it later
    return version


def example_list(*, version: DatasetVersion) -> QuerySet[Example]:
    """The examples of one dataset version, in order (the example_dataset_added_idx index)."""
    number = version.number
    return (
        Example.objects.filter(dataset_id=version.dataset_id, added_in__lte=number)
        .filter(Q(removed_in__isnull=True) | Q(removed_in__gt=number))
        .order_by("position")
    )


def examples_iter(*, version: DatasetVersion, chunk_size: int = CHUNK_SIZE) -> Iterator[Example]:
    """The version's examples streamed from the database, `chunk_size` rows at a time (for exports)."""
    return example_list(version=version).iterator(chunk_size=chunk_size)
