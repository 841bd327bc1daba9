"""Medic as a cluster for the HA, crash and storm tests: N ``medic serve`` processes sharing a
real Redis (AOF on) and the MongoDB fake, behind a round-robin balancer (what the Kubernetes
Service does), optionally against the fake kube-apiserver with crash-looping Deployments."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from redis.asyncio import Redis

from medic.clients.redis import connect
from medic.coordination.redis_keys import GROUP, RedisKeys
from tests.e2e.medic_process import MedicProcess
from tests.fakes.kube_apiserver import FakeKubeApiserver
from tests.fakes.mongo_server import FakeMongoServer
from tests.servers.redis_server import RedisServer

NS = "playcode"
GOOD = "registry.example/app:v1"
BAD = "registry.example/app:v2"
TOKEN = "webhook-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
CRASH_LOG = "Server starting\nTypeError: Cannot read properties of undefined (reading 'port')\n"
SURGE = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 0}}
POD_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes puts after a ReplicaSet's name
KEYS = RedisKeys()


class Balancer:
    """Round-robin HTTP forwarding to the live replicas, skipping those that refuse connections."""

    def __init__(self, upstreams: Callable[[], list[str]]) -> None:
        self.upstreams = upstreams
        self.forwarded: dict[str, int] = {}
        self._turn = itertools.count()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")}
        ups = self.upstreams()
        start = next(self._turn)
        for i in range(len(ups)):
            upstream = ups[(start + i) % len(ups)]
            try:
                async with self._session.request(
                    request.method, upstream + request.path_qs, data=body, headers=headers
                ) as resp:
                    payload = await resp.read()
                    self.forwarded[upstream] = self.forwarded.get(upstream, 0) + 1
                    return web.Response(body=payload, status=resp.status, content_type=resp.content_type)
            except aiohttp.ClientConnectionError:
                continue
        return web.Response(status=503, text="no replica answers")


@dataclass
class Cluster:
    tmp: Path
    redis: RedisServer
    mongo: FakeMongoServer
    env: dict[str, str]
    kube: FakeKubeApiserver | None = None
    replicas: list[MedicProcess] = field(default_factory=list)
    balancer: Balancer | None = None
    redis_client: Redis | None = None
    _generation: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        assert self.balancer is not None
        return self.balancer.url

    def live(self) -> list[MedicProcess]:
        return [r for r in self.replicas if r.proc.running]

    def new_replica(self) -> MedicProcess:
        n = next(self._generation)
        replica = MedicProcess(self.tmp / f"replica-{n}", self.env)
        self.replicas.append(replica)
        return replica

    async def add_replica(self) -> MedicProcess:
        replica = self.new_replica()
        await replica.start()
        return replica

    def by_pid(self, pid: int) -> MedicProcess:
        (found,) = [r for r in self.replicas if r.proc.pid == pid]
        return found

    async def pending(self) -> list[dict[str, Any]]:
        """The inbox entries claimed and not finished: id, consumer, deliveries."""
        assert self.redis_client is not None
        return list(await self.redis_client.xpending_range(KEYS.inbox, GROUP, "-", "+", 100))

    async def backlog(self) -> int:
        """Accepted deliveries not finished (claimed or not): acknowledged entries are deleted."""
        assert self.redis_client is not None
        return int(await self.redis_client.xlen(KEYS.inbox))

    async def incidents(self, **params: str) -> list[dict[str, Any]]:
        (replica, *_) = self.live()
        async with aiohttp.ClientSession() as s, s.get(f"{replica.url}/api/v1/incidents", params=params) as r:
            return list((await r.json())["items"])

    async def incident(self, incident_id: str) -> dict[str, Any]:
        (replica, *_) = self.live()
        async with aiohttp.ClientSession() as s, s.get(f"{replica.url}/api/v1/incidents/{incident_id}") as r:
            body: dict[str, Any] = await r.json()
            return body

    async def metric(self, name: str) -> float:
        """A counter summed over the live replicas."""
        total = 0.0
        async with aiohttp.ClientSession() as s:
            for replica in self.live():
                async with s.get(f"{replica.url}/metrics") as r:
                    for line in (await r.text()).splitlines():
                        if line.startswith(name + " ") or line.startswith(name + "{"):
                            total += float(line.rsplit(" ", 1)[1])
        return total


def consumer_pid(consumer: str) -> int:
    """Worker consumers are named ``<host>-<pid>-<worker index>``."""
    return int(consumer.rsplit("-", 2)[1])


@contextlib.asynccontextmanager
async def medic_cluster(
    tmp: Path,
    redis: RedisServer,
    *,
    replicas: int = 3,
    kube: FakeKubeApiserver | None = None,
    **env: str,
) -> AsyncIterator[Cluster]:
    async with FakeMongoServer() as mongo:
        base = {
            "MEDIC_REDIS_URL": redis.url,
            "MEDIC_MONGO_URL": mongo.url,
            "MEDIC_WEBHOOK_TOKEN": TOKEN,
            "MEDIC_LEASE_SECONDS": "2",
            "MEDIC_LOG_LEVEL": "info",
        }
        if kube is not None:
            base |= {
                "MEDIC_KUBE_MODE": "kubeconfig",
                "MEDIC_KUBECONFIG": str(kube.write_kubeconfig(tmp / "kubeconfig")),
            }
        cluster = Cluster(tmp, redis, mongo, base | env, kube)
        cluster.redis_client = connect(redis.url)
        cluster.balancer = Balancer(lambda: [r.url for r in cluster.live()])
        await cluster.balancer.start()
        try:
            await asyncio.gather(*(cluster.new_replica().start() for _ in range(replicas)))
            yield cluster
        finally:
            await asyncio.gather(*(r.stop() for r in cluster.replicas), return_exceptions=True)
            await cluster.balancer.close()
            await cluster.redis_client.aclose()


def crashlooping_deployments(kube: FakeKubeApiserver, names: list[str], *, replicas: int = 2) -> None:
    """Deployments whose new revision crash-loops while the old pods keep serving."""
    kube.bad_images.add(BAD)
    kube.set_image_log(BAD, CRASH_LOG, previous=True)
    kube.set_image_log(BAD, "Server starting\n")
    for name in names:
        kube.add_deployment(NS, name, GOOD, replicas=replicas, strategy=SURGE, container_name=name)
        kube.set_image(NS, name, BAD, change_cause="deploy v2")


def bad_replicaset(kube: FakeKubeApiserver, name: str) -> str:
    (rs,) = [
        r
        for r in kube.replicasets_of(NS, name)
        if r["spec"]["template"]["spec"]["containers"][0]["image"] == BAD
    ]
    return str(rs["metadata"]["name"])


def crash_alert(deployment: str, pod: str, **labels: str) -> dict[str, Any]:
    from tests.payloads import alert

    return alert(
        "KubePodCrashLooping",
        namespace=NS,
        pod=pod,
        container=deployment,
        job="kube-state-metrics",
        severity="warning",
        **labels,
    )


def pod_names(replicaset: str, count: int, seed: int = 0) -> list[str]:
    rng = random.Random(f"{replicaset}-{seed}")
    names: set[str] = set()
    while len(names) < count:
        names.add(f"{replicaset}-{''.join(rng.choice(POD_SUFFIX) for _ in range(5))}")
    return sorted(names)


def image_of(kube: FakeKubeApiserver, name: str) -> str:
    dep = kube.get_object("Deployment", NS, name)
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def patches_of(kube: FakeKubeApiserver, name: str) -> int:
    return kube.count("PATCH", rf"/deployments/{name}$")


async def post(
    url: str, body: dict[str, Any], session: aiohttp.ClientSession | None = None
) -> dict[str, Any]:
    own = session is None
    s = session or aiohttp.ClientSession()
    try:
        async with s.post(f"{url}/api/v1/alerts", data=json.dumps(body), headers=HEADERS) as r:
            assert r.status == 200, await r.text()
            result: dict[str, Any] = await r.json()
            return result
    finally:
        if own:
            await s.close()


async def wait_for(check: Callable[[], Awaitable[Any]], within: float = 30.0, what: str = "condition") -> Any:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > end:
            raise AssertionError(f"{what} not met within {within}s")
        await asyncio.sleep(0.05)


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")
