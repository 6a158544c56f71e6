"""billing 0005 gives every existing cost entry its run's prompt version (spend per prompt reads it
from the entry now): entries of prompt runs get their version, entries of plain-model runs stay null.
The rows are made with the models as they were before, then the migration runs for real."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts.tests.factories import UserFactory

# billing just before 0005, the apps it reads at the state 0005 runs in.
BEFORE = [
    ("billing", "0004_restrict_so_a_project_deletes_whole"),
    ("runs", "0011_run_label_and_split"),
    ("prompts", "0004_label_split"),
]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


def _latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def _entry(apps, user, version):
    Run = apps.get_model("runs", "Run")
    CostLog = apps.get_model("billing", "CostLog")
    project_id = user.personal_project.pk
    run = Run.objects.create(
        project_id=project_id,
        created_by_id=user.pk,
        prompt_version_id=version.pk if version else None,
        rendered_input=[],
        provider="p",
        model="m",
        status="succeeded",
    )
    return CostLog.objects.create(
        run_id=run.pk,
        project_id=project_id,
        created_by_id=user.pk,
        provider="p",
        model="m",
        prompt_tokens=1,
        completion_tokens=1,
        total_cost=0,
        input_cost=0,
        output_cost=0,
    ).pk


@pytest.mark.django_db(transaction=True)
def test_existing_entries_get_their_runs_prompt_version():
    alice = UserFactory(username="alice")  # made with today's models, before the rewind
    try:
        old = _migrate(BEFORE)
        Prompt = old.get_model("prompts", "Prompt")
        PromptVersion = old.get_model("prompts", "PromptVersion")
        prompt = Prompt.objects.create(project_id=alice.personal_project.pk, name="greet", latest_version_number=1)
        version = PromptVersion.objects.create(prompt=prompt, number=1, kind="text", template="Hi", model="p/m")
        of_prompt = _entry(old, alice, version)
        of_model = _entry(old, alice, None)

        new = _migrate(_latest())

        CostLog = new.get_model("billing", "CostLog")
        assert CostLog.objects.get(pk=of_prompt).prompt_version_id == version.pk
        assert CostLog.objects.get(pk=of_model).prompt_version_id is None
    finally:
        _migrate(_latest())
