"""Redaction: nothing secret leaves Medic (bundles, reports, logs, notifications).

Pure functions over plain data. Two rules:
- a mapping key that looks secret (password, token, secret, api key, credentials, cookie, ...) has its
  value replaced, whatever the value;
- a string is scrubbed of secrets it embeds: passwords in URLs (``mongodb://user:pw@host``), bearer and
  basic credentials, JWTs, ``key=value`` pairs whose key looks secret, and private key blocks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"(pass(word|wd|phrase)?|pwd|secret|token|api[-_]?key|apikey|access[-_]?key|private[-_]?key|"
    r"credential|auth(orization)?|cookie|session[-_]?id|signature|dsn|connection[-_]?string|"
    r"client[-_]?secret|webhook[-_]?url|mongo[-_]?ur[il]|redis[-_]?ur[il]|database[-_]?url)",
    re.IGNORECASE,
)
# Keys that contain a secret-looking word but are known to be harmless.
_SAFE_KEYS = frozenset(
    {
        "tokens",
        "token_count",
        "passed",
        "authenticated",
        "author",
        "auth_mode",
        "secret_name",
        "secretname",
        "secretref",
        "secretkeyref",
        "secret_ref",
        "tokenize",
    }
)

_URL_USERINFO = re.compile(r"(?<![a-zA-Z0-9+.\-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s/]+)@")
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9\-._~+/]{8,}=*")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}")
_KV = re.compile(
    r"(?i)(?<![\w.\-])(?P<key>[\"']?[\w.\-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|"
    r"secret[_-]?key)[\"']?\s*[:=]\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&}\"']+)"
)
# The lookbehinds above let a match start only at a token boundary: without them a long word
# (a stack frame, base64) costs quadratic time, and evidence text comes from outside.
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL)


def is_secret_key(key: str) -> bool:
    k = key.lower()
    if k in _SAFE_KEYS:
        return False
    return bool(_SECRET_KEY.search(k))


def redact_text(text: str) -> str:
    """Scrub secrets embedded in free text (log lines, commands, URLs)."""
    if not text:
        return text
    text = _PEM.sub(REDACTED, text)
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    text = _JWT.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _KV.sub(lambda m: f"{m['key']}{REDACTED}", text)
    return text


def redact(value: Any, *, _depth: int = 0) -> Any:
    """Return a copy of ``value`` with secrets replaced. Handles dicts, lists, tuples, strings."""
    if _depth > 64:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and is_secret_key(key) and item not in (None, "", [], {}):
                out[key] = REDACTED if not isinstance(item, (dict, list)) else redact_structure(item)
            else:
                out[key] = redact(item, _depth=_depth + 1)
        return _redact_name_value_pairs(out)
    if isinstance(value, (list, tuple)):
        return [redact(item, _depth=_depth + 1) for item in value]
    return value


def redact_structure(value: Any) -> Any:
    """Under a secret key: keep the shape (keys, lengths) but no leaf values."""
    if isinstance(value, Mapping):
        return {k: redact_structure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_structure(v) for v in value]
    return REDACTED


def _redact_name_value_pairs(obj: dict[Any, Any]) -> dict[Any, Any]:
    """Kubernetes env entries ``{name: DB_PASSWORD, value: ...}`` hide the secret in the *name*."""
    name = obj.get("name")
    if isinstance(name, str) and "value" in obj and is_secret_key(name) and obj["value"]:
        obj = dict(obj)
        obj["value"] = REDACTED
    return obj
