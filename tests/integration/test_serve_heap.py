"""The served process's garbage collector (medic.intake.heap): once Medic has started, what exists
is frozen and the young generation is wider, so that collections do not stop the acknowledgement.

:func:`settle_heap` runs in a fresh interpreter: the test process's own collector is left as it is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from medic.app.runtime import create_app
from medic.intake.heap import YOUNG_THRESHOLD, settle_heap_on_start
from tests.medic_app import medic_settings

PROBE = """
import gc, json, weakref
import medic.app.runtime  # what a started Medic has loaded
from medic.intake.heap import settle_heap
before = gc.get_threshold()
settle_heap()
frozen, after = gc.get_freeze_count(), gc.get_threshold()

class Node:
    pass

a, b = Node(), Node()
a.other, b.other = b, a  # garbage made after the start: a cycle only the collector frees
gone = weakref.ref(a)
del a, b
gc.collect()
print(json.dumps({"before": before, "after": after, "frozen": frozen, "cycle_freed": gone() is None}))
"""


def test_settle_heap_freezes_the_started_process_and_still_collects_later_garbage() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    seen = json.loads(out.stdout)
    assert seen["frozen"] > 10_000  # the modules, classes and objects of a loaded Medic
    assert seen["after"] == [YOUNG_THRESHOLD, *seen["before"][1:]]  # only the young generation changes
    assert seen["before"][0] < YOUNG_THRESHOLD
    assert seen["cycle_freed"] is True


async def test_the_served_app_settles_its_heap_after_the_runtime_started(tmp_path: Path) -> None:
    app = await create_app(medic_settings(tmp_path, diagnosis_process=False))
    try:
        hooks = list(app.on_startup)
        # the runtime's start (the cleanup context's hook) comes first, then the heap is settled
        assert settle_heap_on_start in hooks
        assert hooks.index(settle_heap_on_start) > hooks.index(app.cleanup_ctx._on_startup)
    finally:
        await app["runtime"].close()
