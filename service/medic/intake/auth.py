"""Webhook authentication: bearer token and/or HTTP basic, compared in constant time."""

from __future__ import annotations

import base64
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


def secret_equal(a: str, b: str) -> bool:
    """Constant-time comparison that never raises (header bytes that were not UTF-8 reach us as
    lone surrogates, which a plain ``encode()`` refuses)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))


def header_text(value: str) -> str:
    """A header value as text any store can hold: bytes that were not UTF-8 become U+FFFD."""
    try:
        raw = value.encode("utf-8", "surrogateescape")  # the bytes as received
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


_eq = secret_equal


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
        except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII input
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        # evaluate both comparisons: no early exit that reveals which part was wrong
        user_ok = _eq(user, creds.username)
        pass_ok = _eq(password, creds.password or "")
        return user_ok and pass_ok
    return False
