"""Webhook endpoints belong to projects: `owner` becomes `created_by`, and the project is its personal project."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def to_personal_projects(apps, schema_editor):
    """Each row goes to the personal project of the user who owned it (accounts 0006 made one per user)."""
    Project = apps.get_model("accounts", "Project")
    personal = dict(Project.objects.filter(personal_for__isnull=False).values_list("personal_for_id", "pk"))
    for model_name in ["WebhookEndpoint"]:
        model = apps.get_model("webhooks", model_name)
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
        ("webhooks", "0001_initial"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="webhookendpoint", name="webhookendpoint_owner_idx"),
        migrations.RenameField(model_name="webhookendpoint", old_name="owner", new_name="created_by"),
        migrations.AlterField(model_name="webhookendpoint", name="created_by", field=_created_by()),
        migrations.AddField(
            model_name="webhookendpoint", name="project", field=_project("webhook_endpoints", null=True)
        ),
        migrations.RunPython(to_personal_projects, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="webhookendpoint", name="project", field=_project("webhook_endpoints", null=False)
        ),
        migrations.AddIndex(
            model_name="webhookendpoint",
            index=models.Index(fields=["project", "-created_at"], name="webhookendpoint_project_idx"),
        ),
    ]
