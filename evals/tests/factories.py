import factory

from accounts.tests.factories import UserFactory
from evals import dataset_services
from evals.models import Dataset, Experiment, ExperimentArm
from prompts.tests.factories import prompt_with_version


class DatasetFactory(factory.django.DjangoModelFactory):
    """An empty dataset (no version yet); append examples with `dataset_with_examples` or the service."""

    class Meta:
        model = Dataset

    class Params:
        # Who made it: the row goes to that user's personal project, with them as its creator.
        owner = factory.SubFactory(UserFactory)

    project = factory.LazyAttribute(lambda dataset: dataset.owner.personal_project)
    created_by = factory.LazyAttribute(lambda dataset: dataset.owner)
    name = factory.Sequence(lambda n: f"dataset-{n}")
    description = ""


def dataset_with_examples(project, rows, name="qa", created_by=None):
    """A dataset of `project` whose version 1 holds `rows` (example objects: variables,
    expected_output, reference, tags), appended through evals.dataset_services.examples_append."""
    dataset = dataset_services.dataset_create(project=project, created_by=created_by, name=name)
    dataset_services.examples_append(project=project, dataset=dataset, examples=rows, created_by=created_by)
    dataset.refresh_from_db()
    return dataset


class ExperimentFactory(factory.django.DjangoModelFactory):
    """A completed experiment of a fresh prompt's version 1 over a fresh one-example dataset, with one
    arm and its summary as experiment_score stores it (no batch ran: for pages that only read it)."""

    class Meta:
        model = Experiment
        skip_postgeneration_save = True

    class Params:
        owner = factory.SubFactory(UserFactory)

    project = factory.LazyAttribute(lambda experiment: experiment.owner.personal_project)
    created_by = factory.LazyAttribute(lambda experiment: experiment.owner)
    prompt = factory.LazyAttribute(
        lambda experiment: prompt_with_version(experiment.project, name=f"p-{Experiment.objects.count()}")[0]
    )
    dataset = factory.LazyAttribute(
        lambda experiment: dataset_with_examples(
            experiment.project, [{"variables": {"name": "Ada"}, "expected_output": "Hello Ada."}], name="qa"
        )
    )
    dataset_version = factory.LazyAttribute(lambda experiment: experiment.dataset.versions.get(number=1))
    name = "smoke"
    scorers = factory.LazyFunction(lambda: [{"name": "exact_match", "options": {}, "threshold": 0.5}])
    status = Experiment.Status.COMPLETED
    summary = factory.LazyFunction(
        lambda: {
            "dataset_version": 1,
            "example_count": 1,
            "arms": [
                {
                    "position": 0,
                    "ref": "1",
                    "version": 1,
                    "runs": 1,
                    "succeeded": 1,
                    "failed": 0,
                    "tokens": {"prompt": 4, "completion": 2, "total": 6},
                    "cost": "0.00",
                    "latency_ms": {"p50": 10, "p95": 10},
                    "scores": {"exact_match": {"mean": 1.0, "median": 1.0, "pass_rate": 1.0, "count": 1, "errors": 0}},
                }
            ],
            "comparisons": [],
        }
    )

    @factory.post_generation
    def arm(experiment, create, extracted, **kwargs):
        if create:
            version = experiment.prompt.versions.get(number=1)
            ExperimentArm.objects.create(experiment=experiment, position=0, ref="1", prompt_version=version)
