"""The serving process's garbage collector, set so that it does not stop the acknowledgement.

CPython's cycle collector walks every tracked object of the generations it collects, with the
event loop stopped. A started Medic holds ~135,000 such objects that live as long as the
process (modules, settings, rules and playbooks, pydantic and Kubernetes client classes). Under
webhook load the requests in flight that outlive a young collection pile up in the oldest
generation and trigger a full collection every second or so: 100-270 ms each, walking those
objects again (bench_intake.py: 13 % of the intake's time, and its p99). So, once the
application has started (:func:`settle_heap`):

- what exists then is collected once and frozen (``gc.freeze``): moved out of the collector's
  generations, never walked again. It is not garbage, so nothing is lost; garbage made later
  is collected as before.
- the young generation holds :data:`YOUNG_THRESHOLD` allocations instead of 700: a request's
  objects are freed by reference counting when it is answered, so a larger young generation is
  collected ~15 times less often and promotes fewer requests still in flight.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Collect, freeze what is left (the started process), widen the young generation."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


async def settle_heap_on_start(_: object) -> None:
    """:func:`settle_heap` as an ``on_startup`` hook, after the runtime has started."""
    settle_heap()
