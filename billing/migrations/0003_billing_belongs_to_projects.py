"""Cost entries and budgets belong to projects.

A cost entry's `owner` becomes `created_by`; a budget's owner becomes the owner's personal project
(a budget is the project's, or one of its keys', not a member's)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def to_personal_projects(apps, schema_editor):
    """Each row goes to the personal project of the user who owned it (accounts 0006 made one per user)."""
    Project = apps.get_model("accounts", "Project")
    CostLog = apps.get_model("billing", "CostLog")
    Budget = apps.get_model("billing", "Budget")
    personal = dict(Project.objects.filter(personal_for__isnull=False).values_list("personal_for_id", "pk"))
    for user_id, project_id in personal.items():
        CostLog.objects.filter(created_by_id=user_id).update(project_id=project_id)
        Budget.objects.filter(owner_id=user_id).update(project_id=project_id)


def _project(related_name, null):
    return models.ForeignKey(
        null=null, on_delete=django.db.models.deletion.CASCADE, related_name=related_name, to="accounts.project"
    )


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("accounts", "0006_projects"),
        ("billing", "0002_budgets"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="costlog", name="costlog_owner_created_idx"),
        migrations.RemoveConstraint(model_name="budget", name="budget_owner_key_uniq"),
        migrations.RemoveConstraint(model_name="budget", name="budget_owner_user_wide_uniq"),
        migrations.RenameField(model_name="costlog", old_name="owner", new_name="created_by"),
        migrations.AlterField(
            model_name="costlog",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(model_name="costlog", name="project", field=_project("cost_logs", null=True)),
        migrations.AddField(model_name="budget", name="project", field=_project("budgets", null=True)),
        migrations.RunPython(to_personal_projects, migrations.RunPython.noop),
        migrations.AlterField(model_name="costlog", name="project", field=_project("cost_logs", null=False)),
        migrations.AlterField(model_name="budget", name="project", field=_project("budgets", null=False)),
        migrations.RemoveField(model_name="budget", name="owner"),
        migrations.AlterModelOptions(name="budget", options={"ordering": ["project", "created_at"]}),
        migrations.AlterField(
            model_name="budget",
            name="api_key",
            field=models.ForeignKey(
                blank=True,
                help_text="Empty: the budget covers all of the project's runs.",
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="budgets",
                to="accounts.apikey",
            ),
        ),
        migrations.AddIndex(
            model_name="costlog",
            index=models.Index(fields=["project", "created_at"], name="costlog_project_created_idx"),
        ),
        migrations.AddConstraint(
            model_name="budget",
            constraint=models.UniqueConstraint(fields=("project", "api_key"), name="budget_project_key_uniq"),
        ),
        migrations.AddConstraint(
            model_name="budget",
            constraint=models.UniqueConstraint(
                condition=models.Q(("api_key__isnull", True)), fields=("project",), name="budget_project_wide_uniq"
            ),
        ),
    ]
