"""Shoppers' access tokens: made here, kept by a store only as a SHA-256 hash.

Example:
    >>> token = new_token()
    >>> token_matches(token, token_hash(token)), token_matches(token, None)
    (True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

_NO_TOKEN = hashlib.sha256(b"no token").hexdigest()  # compared against when a user has none


def new_token() -> str:
    """A new secret token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What a store keeps of a token: its SHA-256, in hex.

    Example:
        >>> len(token_hash("secret"))
        64
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: object, stored_hash: str | None) -> bool:
    """True when `token` is a non-empty string whose hash is `stored_hash`, compared in constant
    time (also when there is no stored hash, so that timing tells nothing).

    Example:
        >>> token_matches("secret", token_hash("secret")), token_matches("", token_hash(""))
        (True, False)
    """
    if not isinstance(token, str) or not token:
        return False
    matches = hmac.compare_digest(token_hash(token), stored_hash or _NO_TOKEN)
    return matches and bool(stored_hash)
