"""Which build of Medic runs: ``medic_build_info{version,revision,python}``.

The revision is the commit the image was built from: the Dockerfile writes its ``REVISION`` build
argument to ``REVISION`` beside the installed package (``medic/REVISION``). A checkout, or a wheel
installed some other way, has no such file: the revision is ``unknown``.
"""

from __future__ import annotations

import re
from pathlib import Path

import medic

REVISION_FILE = "REVISION"
UNKNOWN = "unknown"
_REVISION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,63}")  # a commit id or a tag, nothing else


def build_revision(package_dir: Path | None = None) -> str:
    """The revision written at build time, or ``unknown`` (no file, or not a revision)."""
    path = (package_dir or Path(medic.__file__).parent) / REVISION_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return UNKNOWN
    return text if _REVISION.fullmatch(text) else UNKNOWN
