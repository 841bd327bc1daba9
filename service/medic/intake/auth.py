"""Webhook authentication: bearer token and/or HTTP basic, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class Credentials:
    token: str | None = None
    username: str | None = None
    password: str | None = None

    @property
    def required(self) -> bool:
        return bool(self.token) or self.username is not None


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def check_authorization(header: str | None, creds: Credentials) -> bool:
    """True when no auth is configured, or the Authorization header carries valid credentials."""
    if not creds.required:
        return True
    if not header or " " not in header:
        return False
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer" and creds.token:
        return _eq(value, creds.token)
    if scheme == "basic" and creds.username is not None:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        # evaluate both comparisons: no early exit that reveals which part was wrong
        user_ok = _eq(user, creds.username)
        pass_ok = _eq(password, creds.password or "")
        return user_ok and pass_ok
    return False
