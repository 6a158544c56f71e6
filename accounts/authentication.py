"""DRF authentication by API key: `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

from typing import Any

from django.http import HttpRequest
from rest_framework import authentication, exceptions

from accounts import keys
from accounts.models import APIKey, User
from accounts.services import APIKeyInvalid, api_key_authenticate


class APIKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"
    wrong_scheme = (
        "The Authorization scheme must be Bearer (`Authorization: Bearer <key>`), or send `X-API-Key: <key>`."
    )

    def authenticate(self, request: Any) -> tuple[User, APIKey] | None:
        raw_key = self._raw_key(request)
        if raw_key is None:
            self._refuse_other_scheme(request)
            return None
        # Already authenticated by accounts.middleware.RateLimitMiddleware for this request.
        cached: APIKey | None = getattr(request, "_authenticated_api_key", None)
        if cached is not None:
            return cached.created_by, cached
        try:
            api_key = api_key_authenticate(raw_key=raw_key)
        except APIKeyInvalid as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None
        return api_key.created_by, api_key

    def _raw_key(self, request: HttpRequest) -> str | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == self.keyword.lower():
            if not value.strip():
                raise exceptions.AuthenticationFailed("Empty bearer token.")
            return value.strip()
        # Another Authorization scheme (say a proxy's Basic) leaves X-API-Key to be used.
        return request.headers.get("X-API-Key", "").strip() or None

    def _refuse_other_scheme(self, request: Any) -> None:
        """No key found, but the Authorization header holds one of our keys under another scheme
        (`Token <key>`, or the bare key), or uses DRF's `Token` scheme: say which scheme is ours rather
        than let DRF answer "credentials were not provided". Other schemes (a proxy's Basic) are left
        alone. The message never repeats the header, which may hold the key."""
        words = request.headers.get("Authorization", "").split()
        if words and (words[0].lower() == "token" or keys.split(words[-1]) is not None):
            raise exceptions.AuthenticationFailed(self.wrong_scheme)

    def authenticate_header(self, request: Any) -> str:
        return f'{self.keyword} realm="api"'
