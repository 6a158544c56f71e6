"""The move from user ownership to projects (accounts 0006 and the four migrations that follow it) keeps
every row: each user gets one personal project, and everything the user owned moves into it.

The data is made with the models as they were just before those migrations, then the migrations run
for real (forwards, on this database), and the rows are checked with the models as they are after.
"""

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [
    ("accounts", "0005_move_webhooks_to_their_app"),
    ("prompts", "0001_initial"),
    ("runs", "0006_run_batch_from_its_item"),
    ("billing", "0002_budgets"),
    ("webhooks", "0001_initial"),
]

# (app, model) of every row made before; each must still exist, with the same id, after.
MODELS = [
    ("accounts", "User"),
    ("accounts", "APIKey"),
    ("prompts", "Prompt"),
    ("prompts", "PromptVersion"),
    ("prompts", "PromptLabel"),
    ("prompts", "LabelMove"),
    ("runs", "Run"),
    ("runs", "Batch"),
    ("runs", "BatchItem"),
    ("billing", "CostLog"),
    ("billing", "Budget"),
    ("webhooks", "WebhookEndpoint"),
    ("webhooks", "WebhookDelivery"),
]


def _migrate(targets):
    """Migrate to `targets` and return the models as they are there."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()  # what is applied now
    return executor.loader.project_state(targets).apps


def _latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def _ids(apps):
    return {(app, name): set(apps.get_model(app, name).objects.values_list("pk", flat=True)) for app, name in MODELS}


def _owned_rows(apps, username):
    """The rows a user made before the migration, under their old owner (made by `_build_data`)."""
    User = apps.get_model("accounts", "User")
    user = User.objects.create(username=username, email=f"{username}@example.com", password="unusable")
    APIKey = apps.get_model("accounts", "APIKey")
    key = APIKey.objects.create(
        user=user,
        name=f"{username} key",
        prefix=f"llm_{username}",
        secret_hash=f"{username:0<64}"[:64],
        scopes=["prompts:read", "runs:execute"],
        rate_limit="600/m",
    )

    Prompt = apps.get_model("prompts", "Prompt")
    PromptVersion = apps.get_model("prompts", "PromptVersion")
    PromptLabel = apps.get_model("prompts", "PromptLabel")
    LabelMove = apps.get_model("prompts", "LabelMove")
    # The same prompt name for both users: unique per owner then, unique per project after.
    prompt = Prompt.objects.create(owner=user, name="greeting", latest_version_number=2)
    v1, v2 = (
        PromptVersion.objects.create(
            prompt=prompt,
            number=number,
            kind="text",
            template=f"Hello {{{{ name }}}} v{number}",
            variables={"name": {"type": "string", "required": True}},
            model="local/smollm2",
            created_by=user,
        )
        for number in (1, 2)
    )
    label = PromptLabel.objects.create(prompt=prompt, name="production", version=v2)
    first_move = LabelMove.objects.create(
        prompt=prompt, label="production", from_version=None, to_version=v1, moved_by=user
    )
    second_move = LabelMove.objects.create(
        prompt=prompt, label="production", from_version=v1, to_version=v2, moved_by=user
    )

    Run = apps.get_model("runs", "Run")
    Batch = apps.get_model("runs", "Batch")
    BatchItem = apps.get_model("runs", "BatchItem")
    run = Run.objects.create(
        owner=user,
        api_key=key,
        prompt_version=v2,
        variables={"name": username},
        rendered_input=[{"role": "user", "content": f"Hello {username} v2"}],
        provider="local",
        model="smollm2",
        idempotency_key="same-key-for-both-users",
        status="succeeded",
        output="Hi!",
        prompt_tokens=5,
        completion_tokens=2,
        total_tokens=7,
    )
    batch = Batch.objects.create(owner=user, api_key=key, prompt_version=v2, name=f"{username} batch", item_count=1)
    batch_run = Run.objects.create(
        owner=user,
        api_key=key,
        prompt_version=v2,
        variables={"name": "batch"},
        rendered_input=[{"role": "user", "content": "Hello batch v2"}],
        provider="local",
        model="smollm2",
    )
    item = BatchItem.objects.create(batch=batch, line=0, key="row-0", variables={"name": "batch"}, run=batch_run)

    CostLog = apps.get_model("billing", "CostLog")
    Budget = apps.get_model("billing", "Budget")
    cost = CostLog.objects.create(
        owner=user,
        api_key=key,
        run=run,
        provider="local",
        model="smollm2",
        prompt_tokens=5,
        completion_tokens=2,
        input_cost=Decimal("0.0000010000"),
        output_cost=Decimal("0.0000020000"),
        total_cost=Decimal("0.0000030000"),
        cost_known=True,
    )
    user_budget = Budget.objects.create(owner=user, api_key=None, amount=Decimal("10.000000"), window="month")
    key_budget = Budget.objects.create(owner=user, api_key=key, amount=Decimal("1.500000"), window="day")

    WebhookEndpoint = apps.get_model("webhooks", "WebhookEndpoint")
    WebhookDelivery = apps.get_model("webhooks", "WebhookDelivery")
    endpoint = WebhookEndpoint.objects.create(
        owner=user,
        url=f"https://hooks.example.com/{username}",
        events=["run.succeeded"],
        secret=f"encrypted-secret-of-{username}",
    )
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event="run.succeeded", payload={"run": str(run.pk)}, dedupe_key=f"run.succeeded:{run.pk}"
    )

    return {
        "user": user.pk,
        "key": key.pk,
        "key_fields": (key.prefix, key.secret_hash, key.scopes, key.rate_limit),
        "prompt": prompt.pk,
        "versions": {v1.pk: 1, v2.pk: 2},
        "label": (label.pk, "production", v2.pk),
        "moves": {first_move.pk: (None, v1.pk), second_move.pk: (v1.pk, v2.pk)},
        "runs": {run.pk, batch_run.pk},
        "batch": batch.pk,
        "item": (item.pk, batch.pk, batch_run.pk),
        "cost": (cost.pk, run.pk, key.pk, cost.total_cost),
        "user_budget": user_budget.pk,
        "key_budget": (key_budget.pk, key.pk),
        "endpoint": (endpoint.pk, endpoint.secret),
        "delivery": (delivery.pk, endpoint.pk),
    }


def _check_moved(apps, before, project_id):
    """Everything `before` describes is in `project_id` now, made by its former owner, otherwise unchanged."""
    user_id = before["user"]

    APIKey = apps.get_model("accounts", "APIKey")
    key = APIKey.objects.get(pk=before["key"])
    assert (key.project_id, key.created_by_id) == (project_id, user_id)
    assert (key.prefix, key.secret_hash, key.scopes, key.rate_limit) == before["key_fields"]

    Prompt = apps.get_model("prompts", "Prompt")
    PromptVersion = apps.get_model("prompts", "PromptVersion")
    PromptLabel = apps.get_model("prompts", "PromptLabel")
    LabelMove = apps.get_model("prompts", "LabelMove")
    prompt = Prompt.objects.get(pk=before["prompt"])
    assert (prompt.project_id, prompt.created_by_id) == (project_id, user_id)
    assert (prompt.name, prompt.latest_version_number) == ("greeting", 2)
    assert dict(PromptVersion.objects.filter(prompt=prompt).values_list("pk", "number")) == before["versions"]
    assert set(PromptVersion.objects.filter(prompt=prompt).values_list("created_by_id", flat=True)) == {user_id}
    assert list(PromptLabel.objects.filter(prompt=prompt).values_list("pk", "name", "version_id")) == [before["label"]]
    moves = LabelMove.objects.filter(prompt=prompt, label="production")
    assert {pk: (src, dst) for pk, src, dst in moves.values_list("pk", "from_version_id", "to_version_id")} == before[
        "moves"
    ]
    assert set(moves.values_list("moved_by_id", flat=True)) == {user_id}

    Run = apps.get_model("runs", "Run")
    Batch = apps.get_model("runs", "Batch")
    BatchItem = apps.get_model("runs", "BatchItem")
    runs = Run.objects.filter(pk__in=before["runs"])
    assert set(runs.values_list("project_id", "created_by_id", "api_key_id")) == {(project_id, user_id, key.pk)}
    assert runs.count() == 2
    batch = Batch.objects.get(pk=before["batch"])
    assert (batch.project_id, batch.created_by_id, batch.api_key_id) == (project_id, user_id, key.pk)
    item_id, batch_id, batch_run_id = before["item"]
    item = BatchItem.objects.get(pk=item_id)
    assert (item.batch_id, item.run_id, item.line, item.key) == (batch_id, batch_run_id, 0, "row-0")

    CostLog = apps.get_model("billing", "CostLog")
    Budget = apps.get_model("billing", "Budget")
    cost_id, run_id, key_id, total = before["cost"]
    cost = CostLog.objects.get(pk=cost_id)
    assert (cost.project_id, cost.created_by_id, cost.run_id, cost.api_key_id) == (project_id, user_id, run_id, key_id)
    assert cost.total_cost == total
    user_budget = Budget.objects.get(pk=before["user_budget"])
    assert (user_budget.project_id, user_budget.api_key_id, user_budget.amount) == (project_id, None, Decimal("10"))
    key_budget_id, key_id = before["key_budget"]
    key_budget = Budget.objects.get(pk=key_budget_id)
    assert (key_budget.project_id, key_budget.api_key_id, key_budget.window) == (project_id, key_id, "day")
    assert APIKey.objects.get(pk=key_budget.api_key_id).project_id == project_id  # the key is the budget's project's

    WebhookEndpoint = apps.get_model("webhooks", "WebhookEndpoint")
    WebhookDelivery = apps.get_model("webhooks", "WebhookDelivery")
    endpoint_id, secret = before["endpoint"]
    endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
    assert (endpoint.project_id, endpoint.created_by_id, endpoint.secret) == (project_id, user_id, secret)
    delivery_id, endpoint_id = before["delivery"]
    assert WebhookDelivery.objects.get(pk=delivery_id).endpoint_id == endpoint_id


def _project_ids_of_rows(apps, before):
    """The project of every row that has one, among those made for one user."""
    return {
        apps.get_model("accounts", "APIKey").objects.get(pk=before["key"]).project_id,
        apps.get_model("prompts", "Prompt").objects.get(pk=before["prompt"]).project_id,
        *apps.get_model("runs", "Run").objects.filter(pk__in=before["runs"]).values_list("project_id", flat=True),
        apps.get_model("runs", "Batch").objects.get(pk=before["batch"]).project_id,
        apps.get_model("billing", "CostLog").objects.get(pk=before["cost"][0]).project_id,
        apps.get_model("billing", "Budget").objects.get(pk=before["user_budget"]).project_id,
        apps.get_model("billing", "Budget").objects.get(pk=before["key_budget"][0]).project_id,
        apps.get_model("webhooks", "WebhookEndpoint").objects.get(pk=before["endpoint"][0]).project_id,
    }


@pytest.mark.django_db(transaction=True)
def test_the_project_migrations_move_every_users_rows_into_their_personal_project():
    try:
        old_apps = _migrate(BEFORE)
        alice = _owned_rows(old_apps, "alice")
        bob = _owned_rows(old_apps, "bob")
        ids_before = _ids(old_apps)

        apps = _migrate(_latest())

        # Every row is still there, with the same id; nothing new but the projects and memberships.
        assert _ids(apps) == ids_before
        Project = apps.get_model("accounts", "Project")
        Membership = apps.get_model("accounts", "Membership")
        assert Project.objects.count() == 2
        assert Membership.objects.count() == 2

        projects = {}
        for before in (alice, bob):
            # Exactly one personal project each, with the user as its only member, an owner.
            [project] = Project.objects.filter(personal_for_id=before["user"])
            assert list(Membership.objects.filter(project=project).values_list("user_id", "role")) == [
                (before["user"], "owner")
            ]
            projects[before["user"]] = project.pk
            _check_moved(apps, before, project.pk)

        # Nothing is shared: two projects, and each user's rows are all in their own.
        assert projects[alice["user"]] != projects[bob["user"]]
        assert _project_ids_of_rows(apps, alice) == {projects[alice["user"]]}
        assert _project_ids_of_rows(apps, bob) == {projects[bob["user"]]}
        assert len(set(Project.objects.values_list("slug", flat=True))) == 2
    finally:
        _migrate(_latest())  # leave the database as every other test expects it
