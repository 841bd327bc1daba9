"""Redaction: nothing secret leaves Medic (stored incidents, API, pages, reports, logs, notifications).

Pure functions over plain data, plus one async helper for the event loop. Two rules:
- a mapping key that looks secret (password, token, secret, api key, credentials, cookie, ...) has its
  value replaced, whatever the value; keys are scrubbed like any text too (a label *named* after a
  bearer header must not carry it);
- a string is scrubbed of the secrets it embeds (see :func:`redact_text`). A string holding a JSON
  object (a structured log line) is parsed, redacted inside and serialised again: it stays valid JSON.

Every pattern here runs in time linear in its input, because the input comes from outside (an alert
can carry a megabyte label): a match may start only at a token boundary, every quantifier that could
scan far is bounded or stops at a character that also ends every other match, and private-key blocks
are found by forward scans (BEGIN and END markers paired as they come), never with ``.*?``.
``tests/unit/test_redact_adversarial.py`` holds each pattern's worst case at the body cap and
``bench/bench_redact.py`` measures it.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

REDACTED = "[REDACTED]"
# Above this many characters (summed over a structure's strings and nodes) :func:`redact_async`
# works in a thread, off the event loop: what stays inline costs well under 1 ms, ~2 ms in the
# adversarial worst case (bench/bench_redact.py: ~0.25 s of CPU per MiB for the slowest case).
INLINE_LIMIT = 8 * 1024
JSON_TEXT_LIMIT = 256 * 1024  # a longer JSON line is scrubbed as text (bounded parse cost)
MAX_DEPTH = 64

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# ----------------------------------------------------------------------------- secret key names

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_SECRET_WORDS = frozenset(
    {
        "password", "passwd", "passphrase", "pass", "pwd", "secret", "secrets", "token",
        "credential", "credentials", "creds", "apikey", "authorization", "auth", "cookie",
        "cookies", "signature", "dsn", "privatekey", "sessionid",
    }
)  # fmt: skip
# one word that ends like these is secret too (``adminpassword``, ``PGPASSWORD``, ``accesstoken``)
_SECRET_ENDINGS = ("password", "passwd", "passphrase", "secret", "token", "apikey", "credentials")
_SECRET_PAIRS = frozenset(
    {
        ("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"), ("session", "id"),
        ("session", "key"), ("client", "secret"), ("connection", "string"), ("webhook", "url"),
        ("mongo", "uri"), ("mongo", "url"), ("mongodb", "uri"), ("mongodb", "url"), ("redis", "url"),
        ("redis", "uri"), ("database", "url"), ("db", "url"), ("encryption", "key"),
        ("signing", "key"), ("master", "key"), ("account", "key"),
    }
)  # fmt: skip
# A secret word followed by one of these names something about a secret, not the secret itself:
# ``secretKeyRef``, ``secret_name``, ``token_count``, ``password_file``, ``auth_mode``.
_SAFE_LAST = frozenset(
    {
        "ref", "refs", "name", "names", "count", "ttl", "type", "length", "file", "path", "mode",
        "namespace", "field", "provider", "enabled", "expiry", "expires", "expiration", "at",
        "policy", "kind", "source", "url", "endpoint", "header", "required", "set", "missing",
    }
)  # fmt: skip
# A mapping made only of these keys names a secret rather than holding one (a Kubernetes volume's
# ``secret: {secretName, items: [{key, path}]}``, ``tokenRef: {name, key}``): kept under a secret key.
_REFERENCE_KEYS = frozenset({"name", "secretName", "key", "optional", "defaultMode", "items", "path", "mode"})
# Keys whose value is a whole header line's worth of credentials ("Authorization: Digest a=1, b=2").
_HEADER_KEYS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Whether a mapping key or ``KEY=value`` name says its value is a secret."""
    words = [w.lower() for w in _WORDS.findall(key[:256])]
    if not words:
        return False
    last = words[-1]
    if len(words) > 1 and (words[-2], last) in _SECRET_PAIRS:
        return True
    if last in _SAFE_LAST:
        return False
    if any(w in _SECRET_WORDS or (len(w) > 6 and w.endswith(_SECRET_ENDINGS)) for w in words):
        return True
    if any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words)):
        return True
    # env style: STRIPE_KEY, SENDGRID_API_KEY (lowercase cache_key/sort_key are not secrets)
    return last == "key" and len(words) > 1 and key.isupper()


# ----------------------------------------------------------------------------- patterns

# Private keys: "-----BEGIN RSA PRIVATE KEY-----" ... "-----END RSA PRIVATE KEY-----". Found with two
# forward scans (see _redact_pem); the markers themselves are bounded.
_PEM_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
# What a key's body is made of (base64, line breaks, "Proc-Type: 4,ENCRYPTED" headers): a BEGIN
# without END loses this run (a truncated key is still a key).
_PEM_BODY = re.compile(r"[A-Za-z0-9+/=\s:,\-]*")

# scheme://user:password@host — the password up to the last "@" of the authority. Each scan stops at
# "/" or whitespace, and every start contains "//": two attempts never scan the same characters.
_URL_USERINFO = re.compile(
    r"(?<![a-zA-Z0-9+.\-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]{0,31}://)(?P<user>[^:/@\s]{0,256}):"
    r"(?P<pw>[^\s/?#]+)@"
)
# Tokens recognisable by their prefix, each starting only at a token boundary and of bounded length.
_PREFIXED = re.compile(
    r"(?<![A-Za-z0-9_\-])(?:"
    r"(?:AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|AIPA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])"  # AWS key ids
    r"|gh[pousr]_[A-Za-z0-9]{30,251}"  # GitHub
    r"|github_pat_[A-Za-z0-9_]{22,255}"
    r"|glpat-[A-Za-z0-9_\-]{20,255}"  # GitLab
    r"|xox[abposr]-[A-Za-z0-9\-]{15,250}"  # Slack
    r"|xapp-[A-Za-z0-9\-]{15,250}"
    r"|[sr]k_live_[A-Za-z0-9]{16,247}"  # Stripe
    r"|AIza[0-9A-Za-z_\-]{35}"  # Google API key
    r"|npm_[A-Za-z0-9]{36}"
    r")"
)
_TOKEN_HINT = re.compile(r"A(?:KIA|SIA|IDA|ROA|GPA|NPA|NVA|IPA|BIA|CCA|Iza)|gh|glpat-|xox|xapp-|k_live_|npm_")
_SLACK_WEBHOOK = re.compile(
    r"(?P<head>hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9_/\-]{1,512}"
)
_JWT = re.compile(
    r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{5,8192}\.[A-Za-z0-9_\-]{5,16384}\.[A-Za-z0-9_\-]{5,8192}"
)
# key=value / key: value / "key": "value" — the key part only; whether the key is secret and where its
# value ends is decided in Python (_redact_kv), which then continues after the value.
_KV_KEY = re.compile(
    r"(?<![\w.\-])(?P<q>[\"']?)"
    # only keys holding a fragment is_secret_key looks for reach Python (a cheap bounded prefilter)
    r"(?P<key>(?=[\w.\-]{0,127}?(?i:pass|pwd|secret|token|cred|auth|cookie|signature|dsn|key|session|ur[il]|string))"
    r"[A-Za-z_][\w.\-]{0,127})(?P=q)[ \t]{0,8}[:=][ \t]{0,8}"
)
# a text without any of these (lowercased) has no key is_secret_key would call secret
_KEY_HINTS = (
    "pass", "pwd", "secret", "token", "cred", "auth", "cookie", "signature", "dsn", "key", "session",
    "url", "uri", "string",
)  # fmt: skip
_UNQUOTED_VALUE = re.compile(r"[^\s,;&}\"'<>]+")
_QUOTED_VALUE = {q: re.compile(rf"[^{q}\\\n]*(?:\\.[^{q}\\\n]*)*") for q in "\"'"}
_HEADER_VALUE = re.compile(r"[^\r\n]*")
_AUTH_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9\-]{0,20} (?=\S)")
# Credentials after an auth scheme in free text ("curl -H 'Bearer abc...'").
_BEARER = re.compile(r"(?i)\b(?P<scheme>bearer|basic|token)[ \t]{1,8}(?P<cred>[A-Za-z0-9\-._~+/]{8,}=*)")
# "password is hunter2", "the passphrase was 'x'".
_PROSE = re.compile(
    r"(?i)\b(?P<head>(?:password|passphrase|passwd)[ \t]{1,8}(?:is|was):?[ \t]{1,8}[\"']?)"
    r"(?P<value>[^\s\"',;]{1,256})"
)
# What follows "password is" in an ordinary sentence.
_PROSE_WORDS = frozenset(
    {
        "a", "an", "the", "not", "no", "now", "set", "unset", "empty", "missing", "required", "invalid",
        "incorrect", "wrong", "correct", "valid", "expired", "too", "being", "changed", "reset",
        "null", "none", "blank", "needed", "stored", "hashed", "mounted", "rotated", "ok",
    }
)  # fmt: skip
# A short text of only these characters holds no secret any pattern here recognises (the shortest,
# an AWS key id or a Slack token, take 20): the fast path of label names and most label values.
_PLAIN = re.compile(r"[\w.\-/]{0,19}")


# ----------------------------------------------------------------------------- text


def redact_text(text: str) -> str:
    """Scrub secrets embedded in free text (log lines, commands, URLs, error messages).

    Private key blocks, passwords in URLs, well-known token formats (AWS key ids, GitHub, GitLab,
    Slack, Stripe, Google), Slack webhook URLs, JWTs, ``key=value`` / ``key: value`` / JSON pairs
    whose key looks secret (``DB_PASS=``, ``"password": "x"``), ``Authorization``/``Cookie`` header
    values, bearer/basic credentials and "password is ..." in prose.
    """
    return _redact_text(text, 0)


def _redact_text(text: str, depth: int) -> str:
    if not text or _PLAIN.fullmatch(text):
        return text
    structured = _redact_json_text(text, depth)
    if structured is not None:
        return structured
    # each pass runs only when a cheap hint of what it looks for is present
    low = text.lower()
    if "PRIVATE KEY" in text:
        text = _redact_pem(text)
    if "://" in text:
        text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    if _TOKEN_HINT.search(text):
        text = _PREFIXED.sub(REDACTED, text)
    if "hooks.slack.com/" in text:
        text = _SLACK_WEBHOOK.sub(lambda m: f"{m['head']}{REDACTED}", text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    if (":" in text or "=" in text) and any(hint in low for hint in _KEY_HINTS):
        text = _redact_kv(text)
    if "bearer" in low or "basic" in low or "token" in low:
        text = _BEARER.sub(_bearer, text)
    if "pass" in low:
        text = _PROSE.sub(_prose, text)
    return text


def _redact_pem(text: str) -> str:
    """Replace each private key block. BEGIN and END markers are paired in one forward scan: the
    END search restarts only after the block it closed, and once no END is left none is searched
    again, so a text of many BEGINs without an END costs one pass."""
    out: list[str] = []
    pos = 0
    end: re.Match[str] | None = None
    no_end_left = False
    while (begin := _PEM_BEGIN.search(text, pos)) is not None:
        if not no_end_left:
            end = _PEM_END.search(text, begin.end())
            no_end_left = end is None
        if end is not None:
            stop = end.end()  # the next BEGIN is after it: its END is searched from there
        else:  # no END anywhere after: the key's body (and any further headers) is dropped
            body = _PEM_BODY.match(text, begin.end())
            stop = body.end() if body else begin.end()
        out += [text[pos : begin.start()], REDACTED]
        pos = stop
    out.append(text[pos:])
    return "".join(out)


def _redact_kv(text: str) -> str:
    """``key=value`` pairs whose key is secret: the value goes, quoted or not. Scanning continues
    after a redacted value, so a value is never scanned twice."""
    out: list[str] = []
    pos = 0
    last = 0
    n = len(text)
    while (m := _KV_KEY.search(text, pos)) is not None:
        key = m["key"]
        start = m.end()
        if not is_secret_key(key) or start >= n or text.startswith(REDACTED, start):
            pos = m.end() if m.end() > m.start() else m.start() + 1
            continue
        quote = text[start]
        if quote in "\"'":
            value = _QUOTED_VALUE[quote].match(text, start + 1)
            vstart, vend = start + 1, value.end() if value else start + 1
        elif key.lower() in _HEADER_KEYS:
            value = _HEADER_VALUE.match(text, start)
            vstart, vend = start, value.end() if value else start
        else:
            value = _UNQUOTED_VALUE.match(text, start)
            vstart, vend = start, value.end() if value else start
        scheme = _AUTH_SCHEME.match(text, vstart, vend)
        if scheme and key.lower().endswith("authorization"):
            vstart = scheme.end()  # keep "Bearer"/"Basic": which scheme failed matters
        if vend > vstart:
            out += [text[last:vstart], REDACTED]
            last = vend
        pos = max(vend, m.end())
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


def _bearer(m: re.Match[str]) -> str:
    cred = m["cred"]
    credible = (
        m["scheme"].lower() == "bearer"
        or any(c.isdigit() for c in cred)
        or (any(c.isupper() for c in cred[1:]) and any(c.islower() for c in cred))  # dXNlcjpw
        or len(cred) >= 20
    )
    return f"{m['scheme']} {REDACTED}" if credible else m[0]  # "Token Validation", "basic setup"


def _prose(m: re.Match[str]) -> str:
    if m["value"].lower() in _PROSE_WORDS:
        return m[0]
    return f"{m['head']}{REDACTED}"


def _redact_json_text(text: str, depth: int) -> str | None:
    """A structured log line (``{...}``, possibly after a short prefix): parsed, redacted inside
    and serialised again, so it stays valid JSON. None when the text is not one."""
    if len(text) > JSON_TEXT_LIMIT or not text.rstrip().endswith(("}", "]")):
        return None
    first = min((i for i in (text.find("{", 0, 100), text.find("[", 0, 100)) if i >= 0), default=-1)
    if first < 0:
        return None
    body = text[first:].rstrip()
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(parsed, (dict, list)):
        return None
    scrubbed = _redact(parsed, depth + 1)
    if scrubbed == parsed:
        return text
    compact = '": ' not in body and '", ' not in body
    dumped = json.dumps(scrubbed, ensure_ascii=False, separators=(",", ":") if compact else None)
    return text[:first] + dumped + text[first + len(body) :]


# ----------------------------------------------------------------------------- structures


def redact(value: Any) -> Any:
    """Return a copy of ``value`` with secrets replaced. Handles dicts, lists, tuples, strings."""
    return _redact(value, 0)


def _redact(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        return REDACTED
    if isinstance(value, str):
        return _redact_text(value, depth)
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        renamed: dict[str, int] = {}  # redacted key names seen so far, and how often
        secret_object = value.get("kind") == "Secret"  # a Kubernetes Secret: data and stringData go
        for key, item in value.items():
            name = _redact_text(key, depth) if isinstance(key, str) else key
            if name != key:
                name = _free_name(name, out, renamed)
            secret = isinstance(key, str) and (
                is_secret_key(key) or (secret_object and key in ("data", "stringData"))
            )
            if secret and item not in (None, "", [], {}) and not _names_a_secret(item):
                out[name] = REDACTED if not isinstance(item, (dict, list)) else redact_structure(item)
            else:
                out[name] = _redact(item, depth + 1)
        return _redact_name_value_pairs(out)
    if isinstance(value, (list, tuple)):
        return [_redact(item, depth + 1) for item in value]
    return value


def _names_a_secret(item: Any) -> bool:
    return (
        isinstance(item, Mapping)
        and item.keys() <= _REFERENCE_KEYS
        and (
            not isinstance(items := item.get("items"), list)
            or all(isinstance(i, Mapping) and i.keys() <= _REFERENCE_KEYS for i in items)
        )
    )


def _free_name(name: str, taken: Mapping[Any, Any], renamed: dict[str, int]) -> str:
    """A redacted key that several keys share keeps every entry: ``[REDACTED]``, ``[REDACTED]#2``,
    ... (counted per name, so many colliding keys cost no more than many keys)."""
    n = renamed.get(name, 0) + 1
    candidate = name if n == 1 else f"{name}#{n}"
    while candidate in taken:
        n += 1
        candidate = f"{name}#{n}"
    renamed[name] = n
    return candidate


def redact_model(model: M, *, clean: frozenset[str] = frozenset()) -> M:
    """A redacted copy of a pydantic model (``model`` itself when nothing needed redacting). Fields
    named in ``clean`` are known to be redacted already (an incident's evidence, redacted when it
    was collected): they are neither read nor copied, but shared."""
    doc = model.model_dump(mode="json", exclude=set(clean))
    scrubbed = _redact(doc, 0)
    if scrubbed == doc:
        return model
    return type(model).model_validate(scrubbed | {name: getattr(model, name) for name in clean})


def redact_structure(value: Any) -> Any:
    """Under a secret key: keep the shape (keys, lengths) but no leaf values."""
    if isinstance(value, Mapping):
        return {(redact_text(k) if isinstance(k, str) else k): redact_structure(v) for k, v in value.items()}
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


# ----------------------------------------------------------------------------- off the event loop


def is_small(value: Any, limit: int = INLINE_LIMIT) -> bool:
    """Whether ``value`` holds at most ``limit`` characters (nodes count one each). Stops as soon as
    the limit is passed, so the answer costs O(limit) at most."""
    budget = limit
    stack = [value]
    while stack:
        item = stack.pop()
        budget -= len(item) + 1 if isinstance(item, str) else 1
        if budget < 0:
            return False
        if isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return True


async def redact_async(value: T, fn: Callable[[T], T] = redact) -> T:
    """``fn(value)`` (by default :func:`redact`) for code on the event loop: small values inline,
    large ones in a worker thread, so a megabyte of alert or evidence never stalls the loop.
    ``value`` must not change while this runs (pass data the caller owns)."""
    if is_small(value):
        return fn(value)
    return await asyncio.to_thread(fn, value)
