from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("prompts", "0004_label_split"),
        ("runs", "0010_run_attempt_log_and_cached"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="label",
            field=models.CharField(blank=True, default="", editable=False, max_length=50),
        ),
        migrations.AddField(
            model_name="run",
            name="split_arm",
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.AddField(
            model_name="run",
            name="split_key_hash",
            field=models.CharField(blank=True, default="", editable=False, max_length=64),
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                condition=models.Q(("label", ""), _negated=True),
                fields=["project", "label", "prompt_version", "created_at"],
                name="run_project_label_idx",
            ),
        ),
    ]
