# Encrypts the webhook signing secrets stored in plaintext until now (see webhooks.secrets,
# "signing secrets at rest"). Reversible: going back decrypts them again.

from django.db import migrations, models

# The functions the running code decrypts with: what this writes must be exactly what it reads.
from webhooks.secrets import SecretUndecryptable, secret_decrypt, secret_encrypt


def encrypt_secrets(apps, schema_editor):
    WebhookEndpoint = apps.get_model("accounts", "WebhookEndpoint")
    for pk, stored in WebhookEndpoint.objects.values_list("pk", "secret"):
        try:
            secret_decrypt(stored)
            continue  # already encrypted (the migration ran before, then was faked back)
        except SecretUndecryptable:
            pass
        WebhookEndpoint.objects.filter(pk=pk).update(secret=secret_encrypt(stored))


def decrypt_secrets(apps, schema_editor):
    WebhookEndpoint = apps.get_model("accounts", "WebhookEndpoint")
    for pk, stored in WebhookEndpoint.objects.values_list("pk", "secret"):
        if stored.startswith("whsec_"):
            continue  # plaintext already
        try:
            secret = secret_decrypt(stored)
        except SecretUndecryptable:
            # Stopping loses nothing: the transaction rolls back, every row stays encrypted.
            raise RuntimeError(
                f"Cannot decrypt the secret of webhook endpoint {pk} with FIELD_ENCRYPTION_KEYS; "
                "add the key that encrypted it and migrate back again."
            ) from None
        WebhookEndpoint.objects.filter(pk=pk).update(secret=secret)


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0003_webhooks"),
    ]

    operations = [
        migrations.AlterField(
            model_name="webhookendpoint",
            name="secret",
            field=models.CharField(editable=False, help_text="The signing secret, encrypted.", max_length=500),
        ),
        migrations.RunPython(encrypt_secrets, decrypt_secrets),
        migrations.AddIndex(
            model_name="webhookdelivery",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["next_attempt_at", "created_at"],
                name="webhookdelivery_pending_idx",
            ),
        ),
    ]
