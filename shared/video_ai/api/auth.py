"""API keys: stored as sha256 hashes, compared in constant time, each mapped to a tenant."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping

from video_ai.domain.errors import Unauthorized


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key(prefix: str = "vai_") -> str:
    return prefix + secrets.token_urlsafe(24)


class ApiKeyAuth:
    def __init__(self, key_hashes: Mapping[str, str]) -> None:
        self._hashes = [(h.lower().encode(), tenant) for h, tenant in key_hashes.items()]

    def tenant_for(self, presented: str | None) -> str:
        if not presented:
            raise Unauthorized("missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`")
        digest = hash_key(presented).encode()
        tenant: str | None = None
        # Compare against every stored hash so the time taken does not tell which (or whether one) matched.
        for stored, candidate in self._hashes:
            if hmac.compare_digest(stored, digest):
                tenant = candidate
        if tenant is None:
            raise Unauthorized("invalid API key")
        return tenant
