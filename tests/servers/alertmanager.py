"""A real Alertmanager (Debian ``prometheus-alertmanager`` 0.25) for integration tests.

It is started with a webhook receiver pointing at ``receiver_url`` and clustering disabled
(``--cluster.listen-address=``), so two instances form an "HA pair without gossip": each one
delivers every notification (what Medic must deduplicate).

Timing (measured with 0.25 here): startup ~0.1 s; durations accept milliseconds.
``group_wait`` may be ``0s``, ``group_interval`` and ``repeat_interval`` must be > 0
(``1ms`` works). The defaults ``group_wait=100ms`` / ``group_interval=100ms`` deliver the firing
notification ~0.1 s after the push (alerts pushed within 100 ms share one notification) and the
resolved one ~0.1 s after :meth:`AlertmanagerServer.resolve`; ``0s`` / ``10ms`` gives ~5 ms /
~10 ms. A re-send of an unchanged group happens at the first flush after ``repeat_interval``
(e.g. ``repeat_interval="500ms"`` to test duplicate deliveries). One notification, with
Alertmanager's own retries on 5xx/connection errors, gets max(group_interval, 10 s).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.servers.process import BaseServer, ServerError, http_ok, require_binary

ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"
ALERTMANAGER_PACKAGE = "prometheus-alertmanager"
ALERTMANAGER_ENV = "MEDIC_TEST_ALERTMANAGER_BIN"
RECEIVER_NAME = "medic"

TimeLike = dt.datetime | str


def rfc3339(value: TimeLike) -> str:
    """RFC 3339 in UTC with microseconds (naive datetimes are taken as UTC)."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _label_key(labels: Mapping[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


class AlertmanagerServer(BaseServer):
    """Alertmanager with one webhook receiver named ``medic`` (the root route's receiver)."""

    name = "alertmanager"

    def __init__(
        self,
        receiver_url: str,
        *,
        bearer_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        group_by: Sequence[str] = ("alertname", "namespace"),
        group_wait: str = "100ms",
        group_interval: str = "100ms",
        repeat_interval: str = "1h",
        send_resolved: bool = True,
        max_alerts: int = 0,
        extra_routes: Sequence[Mapping[str, Any]] | None = None,
        extra_receivers: Sequence[Mapping[str, Any]] | None = None,
        inhibit_rules: Sequence[Mapping[str, Any]] | None = None,
        resolve_timeout: str = "5m",
        log_level: str = "info",
        port: int | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        if bearer_token is not None and basic_auth is not None:
            raise ValueError("Alertmanager allows either bearer_token or basic_auth, not both")
        super().__init__(port=port, startup_timeout=startup_timeout)
        self.binary = require_binary(
            ALERTMANAGER_BIN,
            debian_package=ALERTMANAGER_PACKAGE,
            env_var=ALERTMANAGER_ENV,
            fallback_names=("prometheus-alertmanager", "alertmanager"),
        )
        self.receiver_url = receiver_url
        self.bearer_token = bearer_token
        self.basic_auth = basic_auth
        self.group_by = list(group_by)
        self.group_wait = group_wait
        self.group_interval = group_interval
        self.repeat_interval = repeat_interval
        self.send_resolved = send_resolved
        self.max_alerts = max_alerts
        self.extra_routes = [dict(r) for r in extra_routes or ()]
        self.extra_receivers = [dict(r) for r in extra_receivers or ()]
        self.inhibit_rules = [dict(r) for r in inhibit_rules or ()]
        self.resolve_timeout = resolve_timeout
        self.log_level = log_level
        self._starts_at: dict[frozenset[tuple[str, str]], str] = {}

    # -- configuration
    def config(self) -> dict[str, Any]:
        """The ``alertmanager.yml`` content as a dict."""
        webhook: dict[str, Any] = {
            "url": self.receiver_url,
            "send_resolved": self.send_resolved,
            "max_alerts": self.max_alerts,
        }
        http_config: dict[str, Any] = {}
        if self.bearer_token is not None:
            http_config["authorization"] = {"type": "Bearer", "credentials": self.bearer_token}
        if self.basic_auth is not None:
            username, password = self.basic_auth
            http_config["basic_auth"] = {"username": username, "password": password}
        if http_config:
            webhook["http_config"] = http_config
        route: dict[str, Any] = {
            "receiver": RECEIVER_NAME,
            "group_by": self.group_by,
            "group_wait": self.group_wait,
            "group_interval": self.group_interval,
            "repeat_interval": self.repeat_interval,
        }
        if self.extra_routes:
            route["routes"] = self.extra_routes
        config: dict[str, Any] = {
            "global": {"resolve_timeout": self.resolve_timeout},
            "route": route,
            "receivers": [
                {"name": RECEIVER_NAME, "webhook_configs": [webhook]},
                *self.extra_receivers,
            ],
        }
        if self.inhibit_rules:
            config["inhibit_rules"] = self.inhibit_rules
        return config

    @property
    def config_path(self) -> Path:
        return self.dir / "alertmanager.yml"

    async def _prepare(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        (self.dir / "data").mkdir(exist_ok=True)

    def _argv(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self.dir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            f"--web.external-url={self.url}",
            "--cluster.listen-address=",
            f"--log.level={self.log_level}",
        ]

    async def _probe(self) -> bool:
        return await http_ok(f"{self.url}/-/ready")

    # -- HTTP API
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v2"

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, self.api_url + path, **kwargs) as resp,
        ):
            text = await resp.text()
            if resp.status >= 300:
                raise ServerError(f"Alertmanager {method} {path} -> {resp.status}: {text}")
            return await resp.json(content_type=None) if text else None

    async def push_alerts(self, alerts: Iterable[Mapping[str, Any]]) -> None:
        """POST alerts (``labels``, ``annotations``, ``startsAt``, ``endsAt``, ``generatorURL``)
        to ``/api/v2/alerts``, as Prometheus does. Datetimes are converted to RFC 3339."""
        body: list[dict[str, Any]] = []
        for alert in alerts:
            if "labels" not in alert:
                raise ValueError(f"alert without labels: {alert!r}")
            item: dict[str, Any] = {"labels": {k: str(v) for k, v in alert["labels"].items()}}
            if alert.get("annotations"):
                item["annotations"] = {k: str(v) for k, v in alert["annotations"].items()}
            for key in ("startsAt", "endsAt"):
                if alert.get(key) is not None:
                    item[key] = rfc3339(alert[key])
            if alert.get("generatorURL"):
                item["generatorURL"] = alert["generatorURL"]
            body.append(item)
            if "startsAt" in item and "endsAt" not in item:
                self._starts_at[_label_key(item["labels"])] = item["startsAt"]
        await self._request("POST", "/alerts", json=body)

    async def fire(
        self,
        labels: Mapping[str, str],
        annotations: Mapping[str, str] | None = None,
        *,
        starts_at: TimeLike | None = None,
        generator_url: str | None = None,
    ) -> None:
        """Push one firing alert (``startsAt`` defaults to now)."""
        await self.push_alerts(
            [
                {
                    "labels": labels,
                    "annotations": annotations or {},
                    "startsAt": starts_at if starts_at is not None else utcnow(),
                    "generatorURL": generator_url,
                }
            ]
        )

    async def resolve(
        self,
        labels: Mapping[str, str],
        annotations: Mapping[str, str] | None = None,
        *,
        ends_at: TimeLike | None = None,
    ) -> None:
        """Push the same labels with ``endsAt`` = now, so a resolved notification is sent.

        The ``startsAt`` of an earlier push of these labels is reused (the episode key
        fingerprint+startsAt then stays the same, as with Prometheus).
        """
        alert: dict[str, Any] = {
            "labels": labels,
            "annotations": annotations or {},
            "endsAt": ends_at if ends_at is not None else utcnow(),
        }
        starts_at = self._starts_at.get(_label_key({k: str(v) for k, v in labels.items()}))
        if starts_at is not None:
            alert["startsAt"] = starts_at
        await self.push_alerts([alert])

    async def alerts(
        self,
        *,
        active: bool = True,
        silenced: bool = True,
        inhibited: bool = True,
        unprocessed: bool = True,
        filters: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """GET ``/api/v2/alerts`` (``filters`` are matchers such as ``'alertname="X"'``)."""
        params: list[tuple[str, str]] = [
            ("active", str(active).lower()),
            ("silenced", str(silenced).lower()),
            ("inhibited", str(inhibited).lower()),
            ("unprocessed", str(unprocessed).lower()),
        ]
        params += [("filter", f) for f in filters]
        result = await self._request("GET", "/alerts", params=params)
        return list(result or [])

    async def status(self) -> dict[str, Any]:
        """GET ``/api/v2/status`` (config, version, cluster status)."""
        result = await self._request("GET", "/status")
        return dict(result or {})
