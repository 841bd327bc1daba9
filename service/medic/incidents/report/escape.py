"""Escaping of alert-controlled text for Markdown (the report) and Slack mrkdwn (the messages).

Everything an alert carries (its name, labels, annotations, log lines, the target and finding
text derived from them) is data: it must never become structure. Two rules for every context:

- **one line**: newlines, carriage returns and every other line or paragraph separator
  (vertical tab, form feed, NEL, U+2028, U+2029, other control characters) fold to a space, so a
  value can never start a heading, a list item or a table row of its own; bidirectional
  overrides fold too (they can make a line read as something else);
- **no markup**: Markdown metacharacters are backslash-escaped and ``& < >`` become entities
  (no inline HTML, no autolink); in a code span the fence is longer than any backtick run of the
  text; Slack gets its own three entities (``&amp; &lt; &gt;``), which also keeps ``<!channel>``
  and ``<url|label>`` as text.

Pure functions of strings; nothing here knows about incidents.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote

# Line/paragraph separators, the other C0/C1 controls, and bidi overrides/isolates.
_FOLD = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]+")
_BACKTICKS = re.compile("`+")
# A block marker at the start of a value (``#``, ``>``, list bullets, ``1.`` / ``1)``,
# setext/thematic ``=``): escaped, since the value may be placed at the start of a line.
_LEADING_ORDERED = re.compile(r"^(\d{1,9})([.)])")
# An underscore between two letters or digits can neither open nor close emphasis (CommonMark's
# flanking rules), so it stays as is: ``awaiting_approval`` reads as itself in the raw report.
_INTRAWORD_UNDERSCORE = re.compile(r"(?<=[^\W_])\\_(?=[^\W_])")

_MD_INLINE = {c: "\\" + c for c in "\\`*_[]|~#"}
_MD_INLINE.update({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_MD_TABLE = str.maketrans(_MD_INLINE)
_SLACK = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# What a URL may keep as is in Markdown and Slack: RFC 3986 reserved/unreserved characters and
# '%' (already-encoded octets), without the ones Markdown or Slack give a meaning ( ) < > | [ ].
_URL_SAFE = "!#$%&'*+,/:;=?@-._~"


def fold(text: object) -> str:
    """One line: every separator and control character becomes one space."""
    return _FOLD.sub(" ", str(text))


def md_text(text: object) -> str:
    """Inline Markdown text (headings, list items, table cells, emphasis): literal, one line,
    without surrounding spaces (which would undo the emphasis around it)."""
    out = _INTRAWORD_UNDERSCORE.sub("_", fold(text).strip().translate(_MD_TABLE))
    if out[:1] in ("-", "+", "="):
        return "\\" + out
    return _LEADING_ORDERED.sub(r"\1\\\2", out)


def md_code(text: object, *, table: bool = False) -> str:
    """A Markdown code span showing ``text`` verbatim on one line. ``table``: inside a table
    cell, where GFM splits cells at ``|`` even in code spans (and unescapes ``\\|`` there)."""
    body = fold(text)
    if not body.strip():
        return md_text(body) or "` `"
    longest = max((len(m.group()) for m in _BACKTICKS.finditer(body)), default=0)
    fence = "`" * (longest + 1)
    if body[0] in "` " or body[-1] in "` ":
        body = f" {body} "
    if table:
        body = body.replace("|", "\\|")
    return f"{fence}{body}{fence}"


def md_html(text: object) -> str:
    """Text inside an inline HTML element of the report (e.g. ``<summary>``): HTML-escaped,
    one line (Markdown is not interpreted there)."""
    return html.escape(fold(text), quote=True)


def md_fence(text: str, info: str = "") -> list[str]:
    """A fenced code block (lines) whose fence no line of ``text`` can close."""
    longest = max((len(m.group()) for m in _BACKTICKS.finditer(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + fold(info).replace("`", ""), text, fence]


def md_url(url: str) -> str:
    """A URL as a Markdown link destination: the characters Markdown reads (spaces, brackets,
    parentheses, ``<>``, ``|``, backslash, backtick) percent-encoded."""
    return quote(fold(url).strip(), safe=_URL_SAFE)


def md_link(label: object, url: str | None) -> str:
    """``[label](url)``, or the escaped label alone without a URL."""
    return f"[{md_text(label)}]({md_url(url)})" if url else md_text(label)


def slack_text(text: object) -> str:
    """Slack mrkdwn text: one line, ``& < >`` as entities (no mention, no disguised link)."""
    return fold(text).translate(_SLACK)


def slack_code(text: object) -> str:
    """Slack inline code (which cannot hold a backtick: shown as a quote)."""
    return "`" + slack_text(text).replace("`", "'") + "`"


def slack_link(url: str | None, label: object) -> str:
    """``<url|label>`` (the URL's ``| < >`` and spaces percent-encoded), or the label alone."""
    return f"<{md_url(url)}|{slack_text(label)}>" if url else slack_text(label)
