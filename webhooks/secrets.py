"""Signing secrets at rest: an endpoint's secret is stored only as a Fernet token.

The server signs every delivery with the secret, so it must be kept, not hashed. MultiFernet over
settings.FIELD_ENCRYPTION_KEYS (the first encrypts, all decrypt) gives key rotation; with none set,
one key derived from SECRET_KEY. A database dump alone therefore cannot sign a delivery.
"""

import base64
import logging
import uuid

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from webhooks.models import WebhookEndpoint

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105 (a public marker, like "sk-")
# HKDF inputs of the key derived from SECRET_KEY when FIELD_ENCRYPTION_KEYS is unset. Changing them
# (the info still names the model's first home, accounts) makes every secret stored under the
# derived key undecryptable.
_DERIVED_KEY_SALT = b"llmops.field-encryption"
_DERIVED_KEY_INFO = b"accounts.WebhookEndpoint.secret v1"


class SecretUndecryptable(Exception):
    """No configured key decrypts a stored signing secret. The message names the fix, never the secret."""


def derived_encryption_key(secret_key: str) -> str:
    """The Fernet key used when FIELD_ENCRYPTION_KEYS is unset: HKDF-SHA256 of SECRET_KEY."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_DERIVED_KEY_SALT, info=_DERIVED_KEY_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode())).decode()


def _keyring() -> MultiFernet:
    keys = settings.FIELD_ENCRYPTION_KEYS or [derived_encryption_key(settings.SECRET_KEY)]
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except ValueError:  # the key is not named: it is a secret too
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS: key {position} is not a Fernet key (32 url-safe base64-encoded bytes); "
                "generate one with `manage.py webhook_secrets generate-key`."
            ) from None
    return MultiFernet(fernets)


def secret_encrypt(secret: str) -> str:
    """What WebhookEndpoint.secret stores: a Fernet token of the secret under the first key."""
    return _keyring().encrypt(secret.encode()).decode()


def secret_decrypt(stored: str) -> str:
    """The signing secret in a stored token; raises SecretUndecryptable when no key opens it."""
    try:
        return _keyring().decrypt(stored.encode()).decode()
    except InvalidToken:
        if stored.startswith(SECRET_PREFIX):
            raise SecretUndecryptable(
                "The endpoint's signing secret is stored unencrypted; run `manage.py webhook_secrets reencrypt`."
            ) from None
        raise SecretUndecryptable(
            "The endpoint's signing secret decrypts with none of FIELD_ENCRYPTION_KEYS (was the key that "
            "encrypted it removed, or SECRET_KEY changed?)."
        ) from None


def webhook_secrets_reencrypt() -> tuple[int, list[uuid.UUID]]:
    """Encrypts every endpoint's secret again with the first key (and any stored in plaintext).

    Returns (how many were written, ids of endpoints no key decrypts, which are left as they are).
    Run it after putting a new key first in FIELD_ENCRYPTION_KEYS; drop the old key only once it
    reports none left undecryptable.
    """
    keyring = _keyring()
    written, undecryptable = 0, []
    for pk in list(WebhookEndpoint.objects.order_by("pk").values_list("pk", flat=True)):
        with transaction.atomic():
            stored = WebhookEndpoint.objects.select_for_update().filter(pk=pk).values_list("secret", flat=True).first()
            if stored is None:
                continue  # deleted meanwhile
            if stored.startswith(SECRET_PREFIX):
                token = keyring.encrypt(stored.encode())
            else:
                try:
                    token = keyring.rotate(stored.encode())
                except InvalidToken:
                    undecryptable.append(pk)
                    continue
            # Not updated_at: the endpoint itself did not change.
            WebhookEndpoint.objects.filter(pk=pk).update(secret=token.decode())
            written += 1
    logger.info("webhook secrets re-encrypted", extra={"written": written, "undecryptable": len(undecryptable)})
    return written, undecryptable


