"""Who may read incidents (pages and the read API).

Open when neither ``MEDIC_READ_TOKEN`` nor ``MEDIC_AUTH_PROXY_HEADER`` is set (a laptop, a test).
Once either is set, no incident data without one of:

- the auth proxy's header (e.g. ``X-Forwarded-User: alice`` from oauth2-proxy): the value names the
  person, and approvals record it. Only safe when Medic is reachable through that proxy alone;
- ``Authorization: Bearer <read token>`` (or the admin token);
- the ``medic_read`` cookie, set by opening any page once with ``?token=<read token>`` (Medic then
  redirects to the same page without the token, so it stays out of history and proxy logs).
  The cookie holds an HMAC derived from the token, never the token; rotating the token ends it.

All comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from medic.intake.auth import header_text, secret_equal

COOKIE = "medic_read"
COOKIE_MAX_AGE = 30 * 24 * 3600


@dataclass(frozen=True)
class Viewer:
    via: str  # open | proxy | bearer | cookie | query
    identity: str = ""  # the person, when an auth proxy says who it is


_eq = secret_equal


@dataclass(frozen=True)
class ReadAccess:
    read_token: str | None = None
    proxy_header: str | None = None
    admin_token: str | None = None

    @property
    def required(self) -> bool:
        return bool(self.read_token) or bool(self.proxy_header)

    @property
    def cookie_value(self) -> str:
        key = (self.read_token or "").encode()
        return hmac.new(key, b"medic-read-cookie/v1", hashlib.sha256).hexdigest()

    def _token_ok(self, value: str) -> bool:
        ok = False
        for secret in (self.read_token, self.admin_token):
            if secret and _eq(value, secret):
                ok = True
        return ok

    def check(
        self,
        headers: Mapping[str, str],
        cookies: Mapping[str, str],
        query_token: str | None = None,
    ) -> Viewer | None:
        """Pure: the viewer these request parts authenticate, or None."""
        if not self.required:
            return Viewer("open", self.proxied(headers))
        if user := self.proxied(headers):
            return Viewer("proxy", user)
        auth = headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip() and self._token_ok(value.strip()):
            return Viewer("bearer")
        cookie = cookies.get(COOKIE)
        if cookie and self.read_token and _eq(cookie, self.cookie_value):
            return Viewer("cookie")
        if query_token and self.read_token and _eq(query_token, self.read_token):
            return Viewer("query")
        return None

    def proxied(self, headers: Mapping[str, str]) -> str:
        if not self.proxy_header:
            return ""
        return header_text(headers.get(self.proxy_header, "")).strip()[:100]
