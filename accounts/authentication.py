"""DRF authentication by API key: `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

from typing import Any

from django.http import HttpRequest
from rest_framework import authentication, exceptions

from accounts.models import APIKey, User
from accounts.services import APIKeyInvalid, api_key_authenticate


class APIKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[User, APIKey] | None:
        raw_key = self._raw_key(request)
        if raw_key is None:
            return None
        # Already authenticated by accounts.middleware.RateLimitMiddleware for this request.
        cached: APIKey | None = getattr(request, "_authenticated_api_key", None)
        if cached is not None:
            return cached.user, cached
        try:
            api_key = api_key_authenticate(raw_key=raw_key)
        except APIKeyInvalid as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        return api_key.user, api_key

    def _raw_key(self, request: HttpRequest) -> str | None:
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != self.keyword.lower():
                # Another scheme (e.g. Basic) is not ours to judge.
                return None
            if not value.strip():
                raise exceptions.AuthenticationFailed("Empty bearer token.")
            return value.strip()
        value = request.headers.get("X-API-Key", "")
        return value.strip() or None

    def authenticate_header(self, request: Any) -> str:
        return f'{self.keyword} realm="api"'
