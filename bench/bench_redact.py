"""Cost of redaction per text, normal vs pathological (one long token: a stack frame, base64).

Redaction runs on every evidence string on the event loop, and evidence text comes from outside,
so its cost must grow linearly with the length of a token, never quadratically.

    .venv/bin/python bench/bench_redact.py
"""

from __future__ import annotations

import json
import time

from medic.redact import redact_text

CASES = {
    "log line (90 chars)": "2026-11-26T08:00:00Z GET /api/users/42 200 12ms token=abc123 ua=Mozilla/5.0",
    "one 2,000-char word": "x" * 2000,
    "one 20,000-char word": "x" * 20000,
    "20,000 chars of dotted identifiers": "abc_def.ghi-" * 1667,
    "base64 blob (8,000 chars)": "QUJD" * 2000,
}


def main() -> None:
    rows = {}
    for name, text in CASES.items():
        n = 20
        t0 = time.perf_counter()
        for _ in range(n):
            redact_text(text)
        ms = (time.perf_counter() - t0) / n * 1000
        rows[name] = round(ms, 3)
        print(f"{name:38} {ms:8.3f} ms")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
