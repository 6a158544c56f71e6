"""The cost entry carries its run's prompt version (backfilled from the runs), and the daily rollup
of the cost log (billing/rollup.py)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def _backfill_prompt_versions(apps, schema_editor):
    CostLog = apps.get_model("billing", "CostLog")
    Run = apps.get_model("runs", "Run")
    version = Run.objects.filter(pk=models.OuterRef("run_id")).values("prompt_version_id")[:1]
    CostLog.objects.filter(run__prompt_version__isnull=False).update(prompt_version_id=models.Subquery(version))


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0006_projects'),
        ('billing', '0004_restrict_so_a_project_deletes_whole'),
        ('prompts', '0004_label_split'),
        ('runs', '0011_run_label_and_split'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='costlog',
            name='prompt_version',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='prompts.promptversion'),
        ),
        migrations.RunPython(_backfill_prompt_versions, migrations.RunPython.noop),
        migrations.CreateModel(
            name='CostDay',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('provider', models.CharField(max_length=50)),
                ('model', models.CharField(max_length=200)),
                ('runs', models.PositiveIntegerField()),
                ('prompt_tokens', models.PositiveBigIntegerField()),
                ('completion_tokens', models.PositiveBigIntegerField()),
                ('cost', models.DecimalField(decimal_places=10, max_digits=18)),
                ('unknown_cost_runs', models.PositiveIntegerField()),
                ('api_key', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='accounts.apikey')),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.project')),
                ('prompt_version', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='prompts.promptversion')),
            ],
            options={
                'indexes': [models.Index(fields=['project', 'day'], name='costday_project_day_idx')],
            },
        ),
        migrations.CreateModel(
            name='CostRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('rolled_at', models.DateTimeField(auto_now_add=True)),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='accounts.project')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('project', 'day'), name='costrollup_project_day_unique')],
            },
        ),
    ]
