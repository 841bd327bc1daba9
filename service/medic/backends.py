"""The systems Medic diagnoses and acts on, built from settings, closed on shutdown.

A backend left unconfigured is ``None``; collectors that need it report ``not_configured``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medic.collectors.prometheus import PrometheusBackend
from medic.settings import Settings


@dataclass
class Backends:
    settings: Settings
    prometheus: PrometheusBackend | None = None
    kube: Any = None
    mongo: Any = None
    redis: Any = None
    loki: Any = None

    @classmethod
    async def from_settings(cls, settings: Settings) -> Backends:
        backends = cls(settings=settings)
        if settings.prometheus_url:
            backends.prometheus = PrometheusBackend(settings.prometheus_url)
        return backends

    async def close(self) -> None:
        if self.prometheus is not None:
            self.prometheus.close()
        for name in ("kube", "mongo", "redis", "loki"):
            client = getattr(self, name)
            close = getattr(client, "close", None)
            if close is not None:
                result = close()
                if hasattr(result, "__await__"):
                    await result
