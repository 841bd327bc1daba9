"""Pins of the real-server harness: process helper, Alertmanager, Prometheus, Redis."""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from tests.servers.alertmanager import AlertmanagerServer, rfc3339, utcnow
from tests.servers.fixtures import AlertmanagerFactory, PrometheusFactory, RedisServerFactory
from tests.servers.openmetrics import Series, counter, gauge, render_openmetrics
from tests.servers.playcode_series import (
    Timeline,
    http_requests,
    latency_histogram,
    p99_observations,
    websocket_connections,
)
from tests.servers.process import (
    ALLOW_SKIP_ENV,
    BinaryNotFoundError,
    ManagedProcess,
    ServerError,
    ServerStartError,
    free_port,
    listens_on,
    require_binary,
)
from tests.servers.prometheus import PromQLError
from tests.servers.redis_server import RedisServer
from tests.servers.webhook import WebhookRecorder, is_notification

# --------------------------------------------------------------------------- process helper


def test_free_port_is_bindable_on_loopback() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_missing_binary_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_SKIP_ENV, raising=False)
    with pytest.raises(BinaryNotFoundError, match=r"apt-get install -y prometheus-alertmanager"):
        require_binary("/nonexistent/alertmanager", debian_package="prometheus-alertmanager")


def test_missing_binary_skips_only_when_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_SKIP_ENV, "1")
    with pytest.raises(pytest.skip.Exception, match="redis-server"):
        require_binary("/nonexistent/redis-server", debian_package="redis-server")


def test_binary_override_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIC_TEST_SOME_BIN", sys.executable)
    found = require_binary("/nonexistent/x", debian_package="x", env_var="MEDIC_TEST_SOME_BIN")
    assert found == sys.executable


async def never_ready() -> bool:
    return False


async def test_early_exit_reports_the_log_tail(tmp_path: Path) -> None:
    script = "import sys; print('boom: config is broken', flush=True); sys.exit(3)"
    proc = ManagedProcess("crasher", [sys.executable, "-c", script], log_path=tmp_path / "x.log")
    proc.start()
    with pytest.raises(ServerStartError, match=r"(?s)exited with code 3.*boom: config is broken"):
        await proc.wait_ready(never_ready, within=10)


async def test_readiness_deadline_then_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    script = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('stubborn up', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = ManagedProcess("stubborn", [sys.executable, "-c", script], log_path=tmp_path / "s.log")
    proc.start()
    try:
        with pytest.raises(ServerStartError, match=r"(?s)not ready after 0\.3s"):
            await proc.wait_ready(never_ready, within=0.3)
    finally:
        code = await proc.stop(term_timeout=0.3)
    assert code == -signal.SIGKILL
    assert not proc.running


# --------------------------------------------------------------------------- Alertmanager

ALERT_LABELS = {
    "alertname": "KubePodCrashLooping",
    "namespace": "playcode",
    "pod": "playcode-app-7d9f8b6c5-abcde",
    "severity": "critical",
}


@pytest.mark.integration
async def test_alertmanager_delivers_firing_then_resolved_with_bearer_token(
    alertmanager_factory: AlertmanagerFactory, webhook_recorder: WebhookRecorder
) -> None:
    am = await alertmanager_factory(receiver_url=webhook_recorder.url, bearer_token="s3cret")
    assert am.startup_seconds is not None and am.startup_seconds < 3

    pushed = time.monotonic()
    await am.fire(ALERT_LABELS, {"summary": "pod is crash looping"}, generator_url="http://prom/g")
    [firing] = await webhook_recorder.wait_for(is_notification("firing"), within=5)
    firing_latency = time.monotonic() - pushed

    assert firing.method == "POST"
    assert firing.path == "/hook"
    assert firing.header("Authorization") == "Bearer s3cret"
    payload = firing.json()
    assert payload["version"] == "4"
    assert payload["receiver"] == "medic"
    assert payload["groupLabels"] == {"alertname": "KubePodCrashLooping", "namespace": "playcode"}
    assert payload["externalURL"] == am.url
    assert payload["truncatedAlerts"] == 0
    [alert] = payload["alerts"]
    assert alert["status"] == "firing"
    assert alert["labels"] == ALERT_LABELS
    assert alert["annotations"] == {"summary": "pod is crash looping"}
    assert alert["generatorURL"] == "http://prom/g"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert len(alert["fingerprint"]) == 16

    listed = await am.alerts()
    assert [a["labels"] for a in listed] == [ALERT_LABELS]

    resolved_at = time.monotonic()
    await am.resolve(ALERT_LABELS)
    [resolved] = await webhook_recorder.wait_for(is_notification("resolved"), within=5)
    resolved_latency = time.monotonic() - resolved_at
    body = resolved.json()
    [gone] = body["alerts"]
    assert gone["status"] == "resolved"
    assert gone["fingerprint"] == alert["fingerprint"]
    assert gone["startsAt"] == alert["startsAt"]  # same episode
    assert gone["endsAt"] != "0001-01-01T00:00:00Z"
    assert body["groupKey"] == payload["groupKey"]
    assert resolved.header("Authorization") == "Bearer s3cret"
    assert firing_latency < 2 and resolved_latency < 2, (firing_latency, resolved_latency)
    assert await am.alerts() == []


@pytest.mark.integration
async def test_alertmanager_basic_auth_and_max_alerts(
    alertmanager_factory: AlertmanagerFactory, webhook_recorder: WebhookRecorder
) -> None:
    am = await alertmanager_factory(
        receiver_url=webhook_recorder.url,
        basic_auth=("medic", "pa:ss"),
        max_alerts=2,
        group_wait="300ms",
    )
    await am.push_alerts(
        [{"labels": {**ALERT_LABELS, "pod": f"playcode-app-7d9f8b6c5-{i}"}} for i in range(3)]
    )
    [request] = await webhook_recorder.wait_for(is_notification("firing"), within=5)
    assert request.header("Authorization") == "Basic bWVkaWM6cGE6c3M="  # medic:pa:ss
    payload = request.json()
    assert len(payload["alerts"]) == 2
    assert payload["truncatedAlerts"] == 1


@pytest.mark.integration
async def test_alertmanager_retries_after_a_5xx(
    alertmanager_factory: AlertmanagerFactory, webhook_recorder: WebhookRecorder
) -> None:
    webhook_recorder.status = 503
    am = await alertmanager_factory(receiver_url=webhook_recorder.url)
    await am.fire(ALERT_LABELS)
    await webhook_recorder.wait_for(is_notification("firing"), within=5)
    webhook_recorder.status = 200
    retried = await webhook_recorder.wait_for(is_notification("firing"), count=2, within=5)
    assert retried[0].body == retried[1].body


@pytest.mark.integration
async def test_ha_pair_without_gossip_both_deliver(
    alertmanager_factory: AlertmanagerFactory, webhook_recorder: WebhookRecorder
) -> None:
    first = await alertmanager_factory(receiver_url=webhook_recorder.url)
    second = await alertmanager_factory(receiver_url=webhook_recorder.url)
    assert first.port != second.port
    starts_at = rfc3339(utcnow() - dt.timedelta(minutes=1))
    for am in (first, second):  # Prometheus sends every alert to every Alertmanager
        await am.push_alerts([{"labels": ALERT_LABELS, "startsAt": starts_at}])
    both = await webhook_recorder.wait_for(is_notification("firing"), count=2, within=5)
    payloads = [r.json() for r in both]
    assert {p["externalURL"] for p in payloads} == {first.url, second.url}
    assert payloads[0]["groupKey"] == payloads[1]["groupKey"]
    keys = {(p["alerts"][0]["fingerprint"], p["alerts"][0]["startsAt"]) for p in payloads}
    assert len(keys) == 1  # same episode from both replicas: Medic must deduplicate
    status = await first.status()
    assert status["cluster"]["status"] == "disabled"


@pytest.mark.integration
async def test_bad_alertmanager_config_fails_with_the_log(
    alertmanager_factory: AlertmanagerFactory,
) -> None:
    with pytest.raises(ServerStartError, match=r"(?s)exited with code 1.*not a valid duration"):
        await alertmanager_factory(receiver_url="http://127.0.0.1:9/hook", group_wait="soon")


async def test_alertmanager_rejects_two_auth_methods() -> None:
    with pytest.raises(ValueError, match="either"):
        AlertmanagerServer("http://127.0.0.1:9/", bearer_token="t", basic_auth=("u", "p"))


# --------------------------------------------------------------------------- OpenMetrics


def test_openmetrics_counter_family_and_eof() -> None:
    text = render_openmetrics(
        [
            counter("http_requests", {"status_code": "500"}, [(20, 2), (10, 1.5)], help="Reqs"),
            gauge("ws_active", {"note": 'a "q" \\ b\nc'}, [(10, 7)]),
        ]
    )
    assert text.splitlines() == [
        "# TYPE http_requests counter",
        "# HELP http_requests Reqs",
        'http_requests_total{status_code="500"} 1.5 10',
        'http_requests_total{status_code="500"} 2 20',
        "# TYPE ws_active gauge",
        'ws_active{note="a \\"q\\" \\\\ b\\nc"} 7 10',
        "# EOF",
    ]


def test_openmetrics_histogram_points_are_grouped_per_timestamp() -> None:
    tl = Timeline(start=100, end=115, step=15)
    text = render_openmetrics(latency_histogram(tl, buckets=(0.1, 1.0), p99=0.5))
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert text.startswith("# TYPE http_request_duration_seconds histogram\n")
    names_at_100 = [line.split("{")[0] + line.split()[-1] for line in samples[:5]]
    assert names_at_100 == [
        "http_request_duration_seconds_bucket100",
        "http_request_duration_seconds_bucket100",
        "http_request_duration_seconds_bucket100",
        "http_request_duration_seconds_count100",
        "http_request_duration_seconds_sum100",
    ]
    assert 'le="0.1"' in samples[0] and 'le="1.0"' in samples[1] and 'le="+Inf"' in samples[2]


@pytest.mark.parametrize(
    ("series", "error"),
    [
        (Series("x", "counter", {}, [(1, 1)]), "_total"),
        (Series("x_total", "counter", {}, [(1, 1), (1, 2)]), "duplicate timestamps"),
        (Series("x", "gauge", {"__name__": "y"}, [(1, 1)]), "label name"),
        (Series("x_bucket", "histogram", {}, [(1, 1)]), "le label"),
        (Series("x", "gauge", {}, [(1_700_000_000_000, 1)]), "milliseconds"),
    ],
)
def test_openmetrics_rejects_what_promtool_would(series: Series, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        render_openmetrics([series])


def test_p99_observations_interpolate_to_the_target() -> None:
    bounds = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
    for target in (0.08, 0.3, 2.0, 4.0):
        obs = p99_observations(target, rps=10.0, buckets=bounds)
        total = sum(n for _, n in obs)
        cumulative = [sum(n for v, n in obs if v <= b) / total for b in bounds]
        i = next(i for i, c in enumerate(cumulative) if c >= 0.99)
        lo, c_lo = (bounds[i - 1], cumulative[i - 1]) if i else (0.0, 0.0)
        quantile = lo + (bounds[i] - lo) * (0.99 - c_lo) / (cumulative[i] - c_lo)
        assert math.isclose(quantile, target, rel_tol=1e-9), (target, quantile)


# --------------------------------------------------------------------------- Prometheus


@pytest.mark.integration
async def test_prometheus_serves_backfilled_playcode_series(
    prometheus_factory: PrometheusFactory,
) -> None:
    timeline = Timeline.recent(minutes=60, step=15, end_lag=10)
    series = [
        *latency_histogram(timeline, p99=0.08, spike_p99=2.0, spike_minutes=10),
        *http_requests(timeline, rps=50, error_ratio=0.001, spike_error_ratio=0.2),
        websocket_connections(timeline, level=1200, anomaly_level=150),
    ]
    prom = await prometheus_factory(series)
    assert prom.url == f"http://127.0.0.1:{prom.port}"

    p99 = "histogram_quantile(0.99, sum(rate(http_request_duration_seconds_bucket[5m])) by (le))"
    now_p99 = await prom.query_value(p99)
    before_p99 = await prom.query_value(p99, at=timeline.end - 30 * 60)
    assert 1.0 < now_p99 < 5.0, now_p99
    assert math.isclose(now_p99, 2.0, rel_tol=0.01), now_p99
    assert 0.05 < before_p99 < 0.1, before_p99

    ratio = (
        'sum(rate(http_requests_total{app="playcode-app",status_code=~"5.."}[5m]))'
        ' / sum(rate(http_requests_total{app="playcode-app"}[5m]))'
    )
    assert math.isclose(await prom.query_value(ratio), 0.2, rel_tol=0.01)
    assert math.isclose(await prom.query_value(ratio, at=timeline.end - 1800), 0.001, rel_tol=0.01)
    rps = await prom.query_value('sum(rate(http_requests_total{namespace="playcode"}[5m]))')
    assert math.isclose(rps, 50, rel_tol=0.05), rps

    assert await prom.query_value("websocket_connections_active") == 150
    assert await prom.query_value("max_over_time(websocket_connections_active[1h])") == 1200

    data = await prom.query("up")
    assert data == {"resultType": "vector", "result": []}  # nothing is scraped
    with pytest.raises(PromQLError):
        await prom.query("sum(")


@pytest.mark.integration
async def test_prometheus_data_goes_stale_after_the_lookback(
    prometheus_factory: PrometheusFactory,
) -> None:
    old = Timeline.recent(minutes=30, end_lag=6 * 60)  # ended 6 minutes ago
    prom = await prometheus_factory([websocket_connections(old)])
    assert (await prom.query("websocket_connections_active"))["result"] == []
    assert await prom.query_value("websocket_connections_active", at=old.end) == 1200


@pytest.mark.integration
async def test_promtool_failure_is_reported(prometheus_factory: PrometheusFactory) -> None:
    with pytest.raises(ServerError, match=r"(?s)promtool.*expected timestamp"):
        await prometheus_factory(openmetrics="# TYPE x gauge\nx 1\n# EOF\n")  # no timestamp


# --------------------------------------------------------------------------- Redis


@pytest.mark.integration
async def test_redis_fresh_with_aof_and_restart_keeps_data(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        assert await client.dbsize() == 0
        assert (await client.config_get("appendonly"))["appendonly"] == "yes"
        assert (await client.config_get("save"))["save"] == ""
        assert (await client.config_get("bind"))["bind"] == "127.0.0.1"
        await client.set("medic:lock", "replica-1")
        port, data_dir = redis_server.port, redis_server.dir

        await redis_server.stop()
        with pytest.raises(redis.exceptions.ConnectionError):
            await client.ping()
        await redis_server.start()
        assert (redis_server.port, redis_server.dir) == (port, data_dir)
        assert await client.get("medic:lock") == b"replica-1"

        await client.set("medic:after-restart", "1")
        await redis_server.kill()
        await redis_server.start()
        # redis-py keeps the dead pooled connection: its next command fails once.
        await client.connection_pool.disconnect()
        assert await client.get("medic:after-restart") == b"1"
    finally:
        await client.aclose()


@pytest.mark.integration
async def test_redis_factory_options(redis_server_factory: RedisServerFactory) -> None:
    a = await redis_server_factory(maxmemory="10mb", maxmemory_policy="noeviction")
    b = await redis_server_factory(appendonly=False)
    assert a.port != b.port and a.dir != b.dir
    client = aioredis.Redis.from_url(a.url)
    other = aioredis.Redis.from_url(b.url)
    try:
        config = await client.config_get("maxmemory*")
        assert config["maxmemory"] == str(10 * 1024 * 1024)
        assert config["maxmemory-policy"] == "noeviction"
        assert (await other.config_get("appendonly"))["appendonly"] == "no"
    finally:
        await client.aclose()
        await other.aclose()


@pytest.mark.integration
async def test_close_removes_the_temp_dir_and_stops_the_process() -> None:
    server = RedisServer()
    async with server:
        pid = server.process.pid
        data_dir = server.dir
        assert data_dir.is_dir()
    assert not data_dir.exists()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.integration
async def test_alertmanager_resends_after_repeat_interval(
    alertmanager_factory: AlertmanagerFactory, webhook_recorder: WebhookRecorder
) -> None:
    am = await alertmanager_factory(
        receiver_url=webhook_recorder.url, group_interval="100ms", repeat_interval="500ms"
    )
    await am.fire(ALERT_LABELS)
    first, again = await webhook_recorder.wait_for(is_notification("firing"), count=2, within=5)
    assert again.received_at - first.received_at >= 0.45
    assert first.json()["alerts"] == again.json()["alerts"]  # same episode, sent twice


# --------------------------------------------------------------------------- start-up, cleanup


@pytest.mark.integration
async def test_port_race_is_retried_on_a_new_port(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy])
        monkeypatch.setattr("tests.servers.process.free_port", lambda: next(ports, None) or free_port())
        async with RedisServer() as server:
            assert server.port != busy
            assert "Address already in use" in server.process.log_text(since_start=False)


@pytest.mark.integration
async def test_fixed_busy_port_fails_with_the_log() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = RedisServer(port=taken.getsockname()[1])
        with pytest.raises(ServerStartError, match=r"(?s)exited with code 1.*already in use"):
            await server.start()
        await server.close()


@pytest.mark.integration
def test_fixtures_stop_servers_when_the_test_fails(tmp_path: Path) -> None:
    """Run a failing test in a child pytest: its Redis must be gone, its temp dir removed."""
    record = tmp_path / "started.txt"
    (tmp_path / "test_child.py").write_text(
        textwrap.dedent(
            f"""
            async def test_fails(redis_server):
                with open({str(record)!r}, "w") as f:
                    f.write(f"{{redis_server.process.pid}} {{redis_server.dir}}")
                assert False, "this test fails on purpose"
            """
        )
    )
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.servers.fixtures",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "this test fails on purpose" in result.stdout
    pid_text, dir_text = record.read_text().split(" ", 1)
    assert not Path(dir_text).exists()
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_text), 0)


def test_listens_on_tells_which_process_holds_a_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert listens_on(os.getpid(), port) is True
        assert listens_on(os.getpid(), free_port()) is False


@pytest.mark.integration
async def test_another_server_on_the_port_is_not_taken_for_ours(
    webhook_recorder: WebhookRecorder,
) -> None:
    # The recorder answers 200 on /-/ready too: only the ownership check tells them apart.
    am = AlertmanagerServer("http://127.0.0.1:9/hook", port=webhook_recorder.port)
    try:
        with pytest.raises(ServerStartError, match=r"(?s)exited with code 1.*already in use"):
            await am.start()
    finally:
        await am.close()


@pytest.mark.integration
def test_servers_die_with_a_hard_killed_test_process(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, os, sys
        from tests.servers.redis_server import RedisServer

        async def main():
            server = RedisServer()
            await server.start()
            print(server.process.pid, server.dir, flush=True)
            os._exit(0)  # no atexit, no teardown: like a SIGKILLed pytest

        asyncio.run(main())
        """
    )
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    pid_text, dir_text = result.stdout.split(" ", 1)
    shutil.rmtree(dir_text.strip(), ignore_errors=True)  # the temp dir is left behind
    pid = int(pid_text)
    deadline = time.monotonic() + 5
    while not _dead_or_zombie(pid):  # orphans are reaped by PID 1, which may take its time
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("redis-server outlived the process that started it")
        time.sleep(0.02)


def _dead_or_zombie(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return any(line.split()[1:2] == ["Z"] for line in status.splitlines() if line.startswith("State:"))
