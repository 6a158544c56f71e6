"""API key material: generation, parsing and hashing. No database access here."""

import hashlib
import hmac
import secrets

KEY_PREFIX = "llmk_"


def generate() -> tuple[str, str]:
    """A fresh (public prefix, secret) pair."""
    return KEY_PREFIX + secrets.token_hex(6), secrets.token_urlsafe(32)


def join(prefix: str, secret: str) -> str:
    return f"{prefix}.{secret}"


def split(raw_key: str) -> tuple[str, str] | None:
    """(prefix, secret) of a client-sent key, or None when it is not shaped like one of ours."""
    prefix, sep, secret = raw_key.strip().partition(".")
    if not sep or not prefix.startswith(KEY_PREFIX) or len(prefix) > 32 or not secret:
        return None
    return prefix, secret


def hash_secret(secret: str) -> str:
    # The secret is 256 random bits, so one round of SHA-256 is enough (no password stretching).
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, secret_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), secret_hash)
