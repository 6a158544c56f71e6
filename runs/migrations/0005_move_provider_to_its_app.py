# Provider moved to the `providers` app (providers/migrations/0001_initial.py): removed from this
# app's state only. Its table and rows stay as they are, under the old name (runs_provider).

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0004_run_lease_and_outbox'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(
                    name='Provider',
                ),
            ],
            database_operations=[],
        ),
    ]
