from datetime import date
from decimal import Decimal

import factory

from accounts.tests.factories import UserFactory
from billing.models import Budget, BudgetReservation, CostLog, ModelPrice
from runs.tests.factories import RunFactory


class ModelPriceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelPrice

    provider = "testllm"
    model = factory.Sequence(lambda n: f"model-{n}")
    input_per_mtok = Decimal("1.5")
    output_per_mtok = Decimal("6")
    effective_from = date(2024, 1, 1)


class CostLogFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CostLog

    run = factory.SubFactory(RunFactory)
    project = factory.LazyAttribute(lambda log: log.run.project)
    created_by = factory.LazyAttribute(lambda log: log.run.created_by)
    provider = factory.LazyAttribute(lambda log: log.run.provider)
    model = factory.LazyAttribute(lambda log: log.run.model)
    prompt_version = factory.LazyAttribute(lambda log: log.run.prompt_version)
    prompt_tokens = 4
    completion_tokens = 2
    input_cost = Decimal("0.000006")
    output_cost = Decimal("0.000012")
    total_cost = Decimal("0.000018")


class BudgetFactory(factory.django.DjangoModelFactory):
    """A project-wide monthly budget (of `owner`'s personal project); pass `api_key` for a key's budget."""

    class Meta:
        model = Budget

    class Params:
        # Who made it: the row goes to that user's personal project, with them as its creator.
        owner = factory.SubFactory(UserFactory)

    project = factory.LazyAttribute(lambda budget: budget.owner.personal_project)
    amount = Decimal("10")
    window = Budget.Window.MONTH


class BudgetReservationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BudgetReservation

    budget = factory.SubFactory(BudgetFactory)
    run = factory.SubFactory(
        RunFactory, project=factory.SelfAttribute("..budget.project"), created_by=None, status="queued"
    )
    amount = Decimal("0.5")
