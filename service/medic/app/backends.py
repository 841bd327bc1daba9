"""The systems Medic diagnoses and acts on, built from their settings (``Settings.diagnosed``),
closed on shutdown.

A backend left unconfigured is ``None``; collectors that need it report ``not_configured``.
"""

from __future__ import annotations

from dataclasses import dataclass

from medic.app.settings import DiagnosedGroup
from medic.clients.kube.client import KubeClient
from medic.clients.loki import LokiBackend
from medic.clients.mongo import MongoBackend
from medic.clients.prometheus import PrometheusBackend
from medic.clients.redis import RedisBackend


@dataclass
class Backends:
    settings: DiagnosedGroup
    prometheus: PrometheusBackend | None = None
    kube: KubeClient | None = None
    mongo: MongoBackend | None = None  # the MongoDB being diagnosed, not Medic's own store
    redis: RedisBackend | None = None  # the Redis being diagnosed, not Medic's own state
    loki: LokiBackend | None = None

    @property
    def namespaces(self) -> list[str]:
        return list(self.settings.namespaces)

    @classmethod
    async def from_settings(cls, settings: DiagnosedGroup) -> Backends:
        backends = cls(settings=settings)
        if settings.prometheus_url:
            backends.prometheus = PrometheusBackend(settings.prometheus_url)
        if settings.target_mongo_url is not None:
            backends.mongo = MongoBackend(settings.target_mongo_url)
        if settings.target_redis_url is not None:
            backends.redis = RedisBackend(settings.target_redis_url)
        if settings.loki_url:
            backends.loki = LokiBackend(settings.loki_url, ingress_selector=settings.ingress_log_selector)
        backends.kube = await KubeClient.from_settings(settings.kube)
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
