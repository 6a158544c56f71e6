from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("prompts", "0003_restrict_so_a_project_deletes_whole"),
    ]

    operations = [
        migrations.AddField(
            model_name="promptlabel",
            name="split",
            field=models.JSONField(blank=True, default=list, editable=False),
        ),
        migrations.AddField(
            model_name="labelmove",
            name="split",
            field=models.JSONField(blank=True, default=list),
        ),
    ]
