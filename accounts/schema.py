"""Tells drf-spectacular how APIKeyAuthentication is sent (imported by accounts.apps)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from accounts.models import Scope


def _description() -> str:
    scopes = "\n".join(f"- `{scope.value}`: {scope.label}" for scope in Scope)
    return (
        "`Authorization: Bearer <key>`\n\n"
        "Each key holds scopes; an operation names the one it requires, and a key without it gets 403 "
        "`insufficient_scope`. Scopes:\n\n" + scopes
    )


class APIKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.APIKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):  # type: ignore[no-untyped-def]
        return {"type": "http", "scheme": "bearer", "description": _description()}
