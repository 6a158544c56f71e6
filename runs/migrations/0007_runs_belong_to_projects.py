"""Runs and batches belong to projects: `owner` becomes `created_by`, and the project is its personal project."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def to_personal_projects(apps, schema_editor):
    """Each row goes to the personal project of the user who owned it (accounts 0006 made one per user)."""
    Project = apps.get_model("accounts", "Project")
    personal = dict(Project.objects.filter(personal_for__isnull=False).values_list("personal_for_id", "pk"))
    for model_name in ["Run", "Batch"]:
        model = apps.get_model("runs", model_name)
        for user_id, project_id in personal.items():
            model.objects.filter(created_by_id=user_id).update(project_id=project_id)


def _created_by():
    return models.ForeignKey(
        blank=True,
        null=True,
        on_delete=django.db.models.deletion.SET_NULL,
        related_name="+",
        to=settings.AUTH_USER_MODEL,
    )


def _project(related_name, null):
    return models.ForeignKey(
        null=null, on_delete=django.db.models.deletion.CASCADE, related_name=related_name, to="accounts.project"
    )


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("accounts", "0006_projects"),
        ("runs", "0006_run_batch_from_its_item"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="run", name="run_owner_idempotency_key_uniq"),
        migrations.RemoveIndex(model_name="run", name="run_owner_created_idx"),
        migrations.RemoveIndex(model_name="run", name="run_owner_status_idx"),
        migrations.RemoveIndex(model_name="batch", name="batch_owner_created_idx"),
        migrations.RenameField(model_name="run", old_name="owner", new_name="created_by"),
        migrations.AlterField(model_name="run", name="created_by", field=_created_by()),
        migrations.AddField(model_name="run", name="project", field=_project("runs", null=True)),
        migrations.RenameField(model_name="batch", old_name="owner", new_name="created_by"),
        migrations.AlterField(model_name="batch", name="created_by", field=_created_by()),
        migrations.AddField(model_name="batch", name="project", field=_project("batches", null=True)),
        migrations.RunPython(to_personal_projects, migrations.RunPython.noop),
        migrations.AlterField(model_name="run", name="project", field=_project("runs", null=False)),
        migrations.AlterField(model_name="batch", name="project", field=_project("batches", null=False)),
        migrations.AddConstraint(
            model_name="run",
            constraint=models.UniqueConstraint(
                condition=models.Q(("idempotency_key__isnull", False)),
                fields=("project", "idempotency_key"),
                name="run_project_idempotency_key_uniq",
            ),
        ),
        migrations.AddIndex(
            model_name="run", index=models.Index(fields=["project", "-created_at"], name="run_project_created_idx")
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(fields=["project", "status", "-created_at"], name="run_project_status_idx"),
        ),
        migrations.AddIndex(
            model_name="batch", index=models.Index(fields=["project", "-created_at"], name="batch_project_created_idx")
        ),
    ]
