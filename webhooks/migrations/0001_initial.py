# The webhook models, moved here from `accounts` (accounts/migrations/0005_move_webhooks_to_their_app.py).
# Their tables already exist (accounts 0003, under the names kept in Meta.db_table): this migration
# only adds the models to this app's state, and moves their content types (and so the staff
# permissions and admin history attached to them) from accounts to webhooks.

import django.core.serializers.json
import django.db.models.deletion
import uuid
from django.conf import settings
from django.db import migrations, models




def move_content_types(apps, schema_editor, *, source="accounts", target="webhooks"):
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in ("webhookendpoint", "webhookdelivery"):
        if not ContentType.objects.filter(app_label=target, model=model).exists():
            ContentType.objects.filter(app_label=source, model=model).update(app_label=target)


def move_content_types_back(apps, schema_editor):
    move_content_types(apps, schema_editor, source="webhooks", target="accounts")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ('accounts', '0005_move_webhooks_to_their_app'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='WebhookEndpoint',
                    fields=[
                        ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('url', models.URLField(help_text='http(s) URL that receives the POSTs.', max_length=2000)),
                        ('events', models.JSONField(default=list, help_text='Subscribed event names; see webhooks.models.WebhookEvent.')),
                        ('secret', models.CharField(editable=False, help_text='The signing secret, encrypted.', max_length=500)),
                        ('description', models.CharField(blank=True, default='', max_length=200)),
                        ('is_active', models.BooleanField(default=True)),
                        ('owner', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='webhook_endpoints', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'accounts_webhookendpoint',
                        'ordering': ['-created_at'],
                    },
                ),
                migrations.CreateModel(
                    name='WebhookDelivery',
                    fields=[
                        ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('event', models.CharField(choices=[('run.succeeded', 'A run succeeded'), ('run.failed', 'A run failed'), ('batch.completed', 'A batch of runs completed'), ('prompt.version_created', 'A prompt version was created'), ('prompt.label_moved', 'A prompt label was moved (refresh cached prompts)')], max_length=64)),
                        ('payload', models.JSONField(encoder=django.core.serializers.json.DjangoJSONEncoder)),
                        ('dedupe_key', models.CharField(blank=True, default='', editable=False, max_length=200)),
                        ('status', models.CharField(choices=[('pending', 'Pending'), ('succeeded', 'Succeeded'), ('failed', 'Failed')], default='pending', max_length=16)),
                        ('attempts', models.PositiveIntegerField(default=0)),
                        ('last_response_code', models.PositiveSmallIntegerField(blank=True, null=True)),
                        ('last_error', models.CharField(blank=True, default='', max_length=500)),
                        ('next_attempt_at', models.DateTimeField(blank=True, null=True)),
                        ('delivered_at', models.DateTimeField(blank=True, null=True)),
                        ('endpoint', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='deliveries', to='webhooks.webhookendpoint')),
                    ],
                    options={
                        'verbose_name_plural': 'webhook deliveries',
                        'db_table': 'accounts_webhookdelivery',
                        'ordering': ['-created_at'],
                    },
                ),
                migrations.AddIndex(
                    model_name='webhookendpoint',
                    index=models.Index(fields=['owner', '-created_at'], name='webhookendpoint_owner_idx'),
                ),
                migrations.AddConstraint(
                    model_name='webhookendpoint',
                    constraint=models.CheckConstraint(condition=models.Q(('url__startswith', 'http://'), ('url__startswith', 'https://'), _connector='OR'), name='webhookendpoint_url_http'),
                ),
                migrations.AddIndex(
                    model_name='webhookdelivery',
                    index=models.Index(fields=['endpoint', '-created_at'], name='webhookdelivery_endpoint_idx'),
                ),
                migrations.AddIndex(
                    model_name='webhookdelivery',
                    index=models.Index(condition=models.Q(('status', 'pending')), fields=['next_attempt_at', 'created_at'], name='webhookdelivery_pending_idx'),
                ),
                migrations.AddConstraint(
                    model_name='webhookdelivery',
                    constraint=models.CheckConstraint(condition=models.Q(('status__in', ['pending', 'succeeded', 'failed'])), name='webhookdelivery_status_valid'),
                ),
                migrations.AddConstraint(
                    model_name='webhookdelivery',
                    constraint=models.CheckConstraint(condition=models.Q(models.Q(('status', 'succeeded'), _negated=True), ('delivered_at__isnull', False), _connector='OR'), name='webhookdelivery_succeeded_has_time'),
                ),
                migrations.AddConstraint(
                    model_name='webhookdelivery',
                    constraint=models.UniqueConstraint(condition=models.Q(('dedupe_key', ''), _negated=True), fields=('endpoint', 'dedupe_key'), name='webhookdelivery_endpoint_dedupe_uniq'),
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
