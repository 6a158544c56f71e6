# Provider, moved here from `runs` (runs/migrations/0005_move_provider_to_its_app.py). Its table
# already exists (runs 0001, under the name kept in Meta.db_table): this migration only adds the model
# to this app's state, and moves its content type (staff permissions, admin history) along.

import django.core.validators
import providers.models
import uuid
from django.db import migrations, models




def move_content_type(apps, schema_editor, *, source="runs", target="providers"):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label=target, model="provider").exists():
        ContentType.objects.filter(app_label=source, model="provider").update(app_label=target)


def move_content_type_back(apps, schema_editor):
    move_content_type(apps, schema_editor, source="providers", target="runs")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('runs', '0005_move_provider_to_its_app'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='Provider',
                    fields=[
                        ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('name', models.SlugField(unique=True)),
                        ('kind', models.CharField(choices=[('hf-inference', 'Hugging Face Inference'), ('openai-compatible', 'OpenAI-compatible (vLLM, TGI, llama.cpp, Ollama)')], max_length=32)),
                        ('base_url', models.CharField(blank=True, default='', help_text='Required for openai-compatible; e.g. http://127.0.0.1:8011/v1 or http://vllm:8000/v1', max_length=500, validators=[providers.models.validate_provider_base_url])),
                        ('api_key_env', models.CharField(blank=True, default='', help_text='Name of the environment variable holding the API key (the name, not the key).', max_length=100, validators=[django.core.validators.RegexValidator('^[A-Za-z_][A-Za-z0-9_]*$', code='invalid', message='Must be an environment variable name, e.g. OPENAI_API_KEY (the name, not the key).')])),
                        ('timeout', models.FloatField(default=60.0, help_text='Seconds per request.')),
                        ('enabled', models.BooleanField(default=True)),
                    ],
                    options={
                        'db_table': 'runs_provider',
                        'ordering': ['name'],
                        'constraints': [models.CheckConstraint(condition=models.Q(('timeout__gt', 0)), name='provider_timeout_positive'), models.CheckConstraint(condition=models.Q(('kind__in', ['hf-inference', 'openai-compatible'])), name='provider_kind_valid')],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_type, move_content_type_back),
    ]
