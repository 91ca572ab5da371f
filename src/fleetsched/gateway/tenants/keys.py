"""API keys -> tenants. Keys are stored hashed (``sha256:<hex>``); a request's key is hashed
once and the answer remembered (in a bounded map), so the common case is one dict lookup."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from fleetsched.api.errors import APIError

_BEARER = b"bearer "


def _unauthorized(message: str) -> APIError:
    return APIError(401, message, None, "invalid_api_key", {"www-authenticate": "Bearer"})


class KeyRing:
    """Hashed keys -> names (tenants, or admins)."""

    __slots__ = ("_hashed", "_seen")

    def __init__(self, hashed: Mapping[str, str]) -> None:
        self._hashed = dict(hashed)  # "sha256:<hex>" -> name
        self._seen: dict[bytes, str | None] = {}

    def __bool__(self) -> bool:
        return bool(self._hashed)

    def lookup(self, key: bytes) -> str | None:
        seen = self._seen
        if key in seen:
            return seen[key]
        name = self._hashed.get("sha256:" + hashlib.sha256(key).hexdigest())
        if len(seen) >= 4096:
            seen.clear()
        seen[key] = name
        return name

    def authenticate(self, authorization: bytes) -> str:
        """The name of the key in an ``Authorization: Bearer KEY`` header, or a 401."""
        if not authorization:
            raise _unauthorized("missing API key: send 'Authorization: Bearer YOUR_KEY'")
        if authorization[:7].lower() != _BEARER:
            raise _unauthorized("the Authorization header must be 'Bearer YOUR_KEY'")
        name = self.lookup(authorization[7:].strip())
        if name is None:
            raise _unauthorized("incorrect API key provided")
        return name


__all__ = ["KeyRing"]
