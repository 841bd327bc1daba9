"""Cost of redaction: ordinary text, and each pattern's adversarial worst case at two sizes.

Redaction runs on everything an alert or a collector brings in, and that comes from outside, so its
cost must grow linearly with the input: the "x4/x1" column (time at 4x the size over time at 1x)
stays near 4 for a linear pattern; a quadratic one shows ~16 (and its 1 MiB time is seconds to
minutes). Times are the thread's CPU time (best of --repeat), so that other work on a shared machine
does not count. The adversarial corpus is the one ``tests/unit/test_redact_adversarial.py`` runs
(``tests/secrets_corpus.py``).

    .venv/bin/python bench/bench_redact.py [--sizes 262144,1048576] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.payloads import alert
from tests.secrets_corpus import ADVERSARIAL, HARMLESS, PLANTED

from medic.domain.redact import redact

ALERT = alert(
    "KubePodCrashLooping",
    namespace="playcode",
    pod="playcode-app-5d4f8b9c7-abcde",
    container="app",
    job="kube-state-metrics",
    instance="10.0.0.12:8080",
    severity="critical",
    annotations={
        "summary": "Pod playcode/playcode-app-5d4f8b9c7-abcde (app) is waiting (reason: CrashLoopBackOff).",
        "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping",
    },
)
ORDINARY: dict[str, object] = {
    "an Alertmanager alert (labels, annotations)": ALERT,
    "log line (90 chars)": "2026-11-26T08:00:00Z GET /api/users/42 200 12ms token=abc123 ua=Mozilla/5.0",
    "JSON log line with a password": PLANTED[-1].text,
    "planted secrets, one line each": "\n".join(p.text for p in PLANTED),
    "harmless lines": "\n".join(HARMLESS),
}


def best_ms(value: object, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.thread_time()
        redact(value)
        best = min(best, time.thread_time() - t0)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="262144,1048576", help="two input sizes in characters")
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (the best is shown)")
    args = parser.parse_args()
    small, large = (int(s) for s in args.sizes.split(","))
    rows: dict[str, object] = {}
    print(f"{'ordinary text':58} {'ms':>9}")
    for name, text in ORDINARY.items():
        ms = best_ms(text, 200)
        rows[name] = round(ms, 4)
        print(f"{name:58} {ms:9.4f}")
    print()
    print(f"{'adversarial (pattern: case)':58} {small:>9} {large:>9} {'ratio':>6}  (ms; sizes in chars)")
    worst = 0.0
    for case in ADVERSARIAL:
        a = best_ms(case.build(small), args.repeat)
        b = best_ms(case.build(large), args.repeat)
        label = f"{case.pattern}: {case.name}"
        ratio = b / a if a > 0 else 0.0
        worst = max(worst, b)
        rows[label] = {str(small): round(a, 2), str(large): round(b, 2), "ratio": round(ratio, 2)}
        print(f"{label:58} {a:9.1f} {b:9.1f} {ratio:6.1f}")
    print(f"\nslowest adversarial case at {large} chars: {worst:.0f} ms (size ratio {large / small:g})")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
