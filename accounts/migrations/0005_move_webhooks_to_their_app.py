# The webhook models moved to the `webhooks` app (webhooks/migrations/0001_initial.py): removed from
# this app's state only. Their tables and rows stay as they are, under their old names.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0004_webhook_secret_encryption'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name='webhookendpoint',
                    name='owner',
                ),
                migrations.DeleteModel(
                    name='WebhookDelivery',
                ),
                migrations.DeleteModel(
                    name='WebhookEndpoint',
                ),
            ],
            database_operations=[],
        ),
    ]
