"""Every Redis key Medic uses, in one place, under one prefix (``medic:`` by default).

=====================================  ===========  ==============================================
key                                    type         holds
=====================================  ===========  ==============================================
``medic:inbox``                        stream       accepted deliveries not yet finished; consumer
                                                    group ``medic-workers``; an entry is deleted
                                                    when acknowledged, so its length is the backlog
``medic:inbox:dead``                   stream       deliveries that failed too often (capped;
                                                    trimmed by age: MEDIC_RETENTION_DEAD_LETTERS)
``medic:inbox:errors``                 hash         entry id -> last processing error
``medic:dedup:<episode>``              string       an alert episode already accepted (PX expiry)
``medic:lock:<name>``                  string       ``<fencing token>|<owner>``, PX expiry
``medic:lock-seq``                     string       the fencing-token counter (INCR)
``medic:action:<idempotency key>``     hash         one action of the ledger
``medic:actions``                      sorted set   idempotency keys of non-skipped actions by time
``medic:actions:<target>``             sorted set   the same, per target
``medic:kill-switch``                  string       the kill switch (JSON)
``medic:mark:<name>``                  string       a durable mark (notification sent, approval
                                                    used, the generated approval secret)
=====================================  ===========  ==============================================
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "medic"
GROUP = "medic-workers"


@dataclass(frozen=True)
class RedisKeys:
    prefix: str = DEFAULT_PREFIX

    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @property
    def inbox(self) -> str:
        return self._k("inbox")

    @property
    def dead(self) -> str:
        return self._k("inbox", "dead")

    @property
    def errors(self) -> str:
        return self._k("inbox", "errors")

    @property
    def dedup_prefix(self) -> str:
        """Prefix of the dedup keys (the Lua script appends the episode key)."""
        return self._k("dedup", "")

    def dedup(self, episode: str) -> str:
        return self.dedup_prefix + episode

    def lock(self, name: str) -> str:
        return self._k("lock", name)

    @property
    def lock_seq(self) -> str:
        return self._k("lock-seq")

    def action(self, idempotency_key: str) -> str:
        return self._k("action", idempotency_key)

    @property
    def actions(self) -> str:
        return self._k("actions")

    def target_actions(self, target: str) -> str:
        return self._k("actions", target)

    @property
    def kill_switch(self) -> str:
        return self._k("kill-switch")

    def mark(self, name: str) -> str:
        return self._k("mark", name)
