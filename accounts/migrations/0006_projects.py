"""Projects and memberships; every user gets a personal project (owner), and API keys move into it.

An API key's `user` becomes its `created_by`, and its `project` the personal project of that user, so
every key keeps working and keeps its history. The other apps' migrations move their rows the same way.
"""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.utils.text import slugify

import accounts.models


def _free_slug(Project, base):
    base = (slugify(base)[:40].strip("-") or "project").lower()
    slug, n = base, 1
    while Project.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def personal_projects(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    Project = apps.get_model("accounts", "Project")
    Membership = apps.get_model("accounts", "Membership")
    APIKey = apps.get_model("accounts", "APIKey")
    for user in User.objects.order_by("date_joined", "username").iterator():
        project = Project.objects.filter(personal_for=user).first()
        if project is None:
            project = Project.objects.create(
                name=f"{user.username}'s project", slug=_free_slug(Project, user.username), personal_for=user
            )
            Membership.objects.create(project=project, user=user, role="owner")
        APIKey.objects.filter(created_by=user).update(project=project)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_move_webhooks_to_their_app"),
    ]

    operations = [
        migrations.CreateModel(
            name="Project",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("name", models.CharField(max_length=100)),
                ("slug", models.SlugField(unique=True)),
                (
                    "protected_labels",
                    models.JSONField(
                        blank=True,
                        default=accounts.models.default_protected_labels,
                        help_text="Label names only admins may move.",
                    ),
                ),
                (
                    "personal_for",
                    models.OneToOneField(
                        blank=True,
                        help_text="The user this is the personal project of; empty for a team project.",
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="personal_project",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"ordering": ["slug"]},
        ),
        migrations.CreateModel(
            name="Membership",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("role", models.CharField(choices=accounts.models.Role.choices, max_length=10)),
                (
                    "project",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="memberships",
                        to="accounts.project",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="memberships",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["project", "created_at"],
                "indexes": [models.Index(fields=["user", "project"], name="membership_user_idx")],
                "constraints": [
                    models.UniqueConstraint(fields=("project", "user"), name="membership_project_user_uniq")
                ],
            },
        ),
        migrations.RemoveIndex(model_name="apikey", name="apikey_user_created_idx"),
        migrations.RenameField(model_name="apikey", old_name="user", new_name="created_by"),
        migrations.AddField(
            model_name="apikey",
            name="project",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.CASCADE, related_name="api_keys", to="accounts.project"
            ),
        ),
        migrations.RunPython(personal_projects, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="apikey",
            name="project",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="api_keys", to="accounts.project"
            ),
        ),
        migrations.AddIndex(
            model_name="apikey",
            index=models.Index(fields=["project", "-created_at"], name="apikey_project_created_idx"),
        ),
    ]
