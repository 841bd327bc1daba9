"""What the CLI sends to a running Medic (``--url``)."""

from __future__ import annotations

import os


def read_headers() -> dict[str, str]:
    """The read token (or the admin token) for a Medic whose incident data needs one."""
    token = os.environ.get("MEDIC_READ_TOKEN") or os.environ.get("MEDIC_ADMIN_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}
