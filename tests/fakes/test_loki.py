"""Pin FakeLoki's query API behaviour (the parts of real Loki that Medic relies on)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes.loki import NS, FakeLoki, go_json_string, parse_time_ns

T0 = 1_700_000_000 * NS  # 2023-11-14T22:13:20Z
APP = {"namespace": "playcode", "container": "playcode-app"}


@pytest.fixture
async def loki() -> AsyncIterator[FakeLoki]:
    async with FakeLoki(clock=lambda: T0 + 600 * NS) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def query_range(
    http: aiohttp.ClientSession, loki: FakeLoki, query: str, **params: Any
) -> dict[str, Any]:
    params = {"query": query, "start": str(T0), "end": str(T0 + 600 * NS), **params}
    async with http.get(f"{loki.url}/loki/api/v1/query_range", params=params) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/json"
        body: dict[str, Any] = await resp.json()
    assert body["status"] == "success"
    return body["data"]


async def lines_of(http: aiohttp.ClientSession, loki: FakeLoki, query: str, **params: Any
                   ) -> list[str]:
    data = await query_range(http, loki, query, **params)
    assert data["resultType"] == "streams"
    entries = [(int(ts), line) for s in data["result"] for ts, line in s["values"]]
    backward = params.get("direction", "backward").lower() == "backward"
    entries.sort(key=lambda e: -e[0] if backward else e[0])
    return [line for _, line in entries]


async def error_of(http: aiohttp.ClientSession, loki: FakeLoki, query: str, **params: Any
                   ) -> tuple[int, str]:
    params = {"query": query, "start": str(T0), "end": str(T0 + 600 * NS), **params}
    async with http.get(f"{loki.url}/loki/api/v1/query_range", params=params) as resp:
        return resp.status, await resp.text()


def at(seconds: float) -> int:
    return T0 + int(seconds * NS)


async def test_ready_and_response_shape(loki: FakeLoki, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{loki.url}/ready") as resp:
        assert resp.status == 200 and (await resp.text()).strip() == "ready"
    loki.push(APP, [(at(1), "hello")])
    data = await query_range(http, loki, '{namespace="playcode"}')
    assert data["result"] == [{"stream": APP | {}, "values": [[str(at(1)), "hello"]]}]
    assert data["stats"]["summary"]["totalLinesProcessed"] == 1
    loki.ready = False
    async with http.get(f"{loki.url}/ready") as resp:
        assert resp.status == 503


async def test_selector_matching(loki: FakeLoki, http: aiohttp.ClientSession) -> None:
    loki.push(APP, [(at(1), "app")])
    loki.push({"namespace": "playcode", "container": "redis"}, [(at(2), "redis")])
    loki.push({"namespace": "playcode-staging", "container": "playcode-app"}, [(at(3), "stg")])
    loki.push({"namespace": "kube-system", "container": "coredns"}, [(at(4), "dns")])

    assert await lines_of(http, loki, '{namespace="playcode"}') == ["redis", "app"]
    assert await lines_of(http, loki, '{namespace=~"playcode.*", container!="redis"}') == [
        "stg", "app"]
    assert await lines_of(http, loki, '{namespace=~"playcode|kube-system", container!~"play.*"}'
                          ) == ["dns", "redis"]
    # regexes are anchored: "play" alone matches nothing
    assert await lines_of(http, loki, '{namespace=~"play"}') == []
    # a matcher on a missing label compares against ""
    assert await lines_of(http, loki, '{namespace="playcode", pod=""}') == ["redis", "app"]
    assert await lines_of(http, loki, '{namespace="nope"}') == []


async def test_label_value_escaping_round_trip(loki: FakeLoki, http: aiohttp.ClientSession
                                               ) -> None:
    tricky = 'say "hi" \\ bye'  # contains a double quote and a backslash
    loki.push({"app": "x", "msg": tricky}, [(at(1), "tricky")])
    loki.push({"app": "x", "msg": "say hi bye"}, [(at(2), "plain")])

    go_quoted = json.dumps(tricky)  # "say \"hi\" \\ bye" - a valid Go string literal
    query = "{msg=" + go_quoted + "}"
    assert await lines_of(http, loki, query) == ["tricky"]
    assert loki.queries[-1].query == query  # recorded exactly as sent

    assert await lines_of(http, loki, "{msg=`" + tricky + "`}") == ["tricky"]
    assert await lines_of(http, loki, '{msg="say \\u0022hi\\x22 \\\\ bye"}') == ["tricky"]
    assert await lines_of(http, loki, '{msg=~"say \\"hi\\" \\\\\\\\ bye"}') == ["tricky"]

    # the naive (unescaped) form is a parse error, not a silent mismatch
    status, text = await error_of(http, loki, '{msg="' + tricky + '"}')
    assert status == 400 and text.startswith("parse error")
    # the returned stream labels carry the raw value
    data = await query_range(http, loki, query)
    assert data["result"][0]["stream"]["msg"] == tricky


async def test_line_filters(loki: FakeLoki, http: aiohttp.ClientSession) -> None:
    loki.push(APP, [(at(1), "GET /health 200"), (at(2), "Error: ECONNREFUSED redis:6379"),
                    (at(3), "error: timeout"), (at(4), "socket.io adapter reconnect")])
    q = '{namespace="playcode"}'
    assert await lines_of(http, loki, q + ' |= "Error"') == ["Error: ECONNREFUSED redis:6379"]
    assert await lines_of(http, loki, q + ' != "error"') == [
        "socket.io adapter reconnect", "Error: ECONNREFUSED redis:6379", "GET /health 200"]
    assert await lines_of(http, loki, q + ' |~ "(?i)error"') == [
        "error: timeout", "Error: ECONNREFUSED redis:6379"]
    assert await lines_of(http, loki, q + ' !~ "[0-9]{3}$" |= "e"') == [
        "socket.io adapter reconnect", "error: timeout"]
    assert await lines_of(http, loki, q + ' |= "health" or "socket"') == [
        "socket.io adapter reconnect", "GET /health 200"]
    assert await lines_of(http, loki, q + ' |= `redis:6379`') == ["Error: ECONNREFUSED redis:6379"]


async def test_json_stage_and_label_filters(loki: FakeLoki, http: aiohttp.ClientSession) -> None:
    loki.push(
        APP,
        [
            (at(1), '{"level":"info","res_status":200,"msg":"ok"}'),
            (at(2), '{"level":"error","res_status":502,"msg":"bad gateway"}'),
            (at(3), '{"level":"error","res_status":"503","msg":"unavailable"}'),
            (at(4), '{"level":"warn","res":{"status":504},"msg":"nested"}'),
            (at(5), "plain text line, not json"),
            (at(6), '{"level":"error","res_status":"n/a"}'),
            (at(7), '{"level":"error","namespace":"from-line"}'),
        ],
    )
    q = '{namespace="playcode"} | json'
    nested = '{"level":"warn","res":{"status":504},"msg":"nested"}'
    assert await lines_of(http, loki, q + " | res_status >= 500", direction="forward") == [
        '{"level":"error","res_status":502,"msg":"bad gateway"}',
        '{"level":"error","res_status":"503","msg":"unavailable"}',
        nested,  # {"res": {"status": ...}} is extracted as res_status
        '{"level":"error","res_status":"n/a"}',  # non-numeric: kept with LabelFilterErr
    ]
    assert await lines_of(http, loki, q + ' | res_status >= 500 | __error__=""',
                          direction="forward") == [
        '{"level":"error","res_status":502,"msg":"bad gateway"}',
        '{"level":"error","res_status":"503","msg":"unavailable"}',
        nested,
    ]
    assert await lines_of(http, loki, q + ' | res_status == 502 | __error__=""') == [
        '{"level":"error","res_status":502,"msg":"bad gateway"}']
    assert await lines_of(http, loki, q + " | res_status >= 500 and res_status < 503",
                          direction="forward") == [
        '{"level":"error","res_status":502,"msg":"bad gateway"}',
        '{"level":"error","res_status":"n/a"}',
    ]
    assert len(await lines_of(http, loki, q + ' | level="error"')) == 4
    assert len(await lines_of(http, loki, q + ' | level=~"err.*|warn", msg!=""')) == 3
    assert await lines_of(http, loki, q + " | res_status > 503 or res_status < 300") == [
        '{"level":"error","res_status":"n/a"}', nested,
        '{"level":"info","res_status":200,"msg":"ok"}']
    assert await lines_of(http, loki, q + " | res_status_x > 1") == []  # missing label: dropped

    data = await query_range(http, loki, q + ' | msg="nested"')
    stream = data["result"][0]["stream"]
    assert stream["res_status"] == "504" and stream["level"] == "warn"

    data = await query_range(http, loki, q + ' | namespace_extracted="from-line"')
    assert data["result"][0]["stream"]["namespace"] == "playcode"

    data = await query_range(http, loki, q + ' | __error__!=""')
    errors = {s["stream"]["__error__"] for s in data["result"]}
    assert errors == {"JSONParserErr"}
    assert [v[1] for s in data["result"] for v in s["values"]] == ["plain text line, not json"]

    data = await query_range(http, loki, q + " | res_status >= 500 | level=\"error\"")
    by_status = {s["stream"]["res_status"]: s["stream"] for s in data["result"]}
    assert by_status["n/a"]["__error__"] == "LabelFilterErr"
    assert "__error__" not in by_status["502"]


async def test_logfmt_stage(loki: FakeLoki, http: aiohttp.ClientSession) -> None:
    loki.push({"app": "ingress"}, [(at(1), 'level=error status=504 msg="upstream timed out"'),
                                   (at(2), "level=info status=200 msg=ok")])
    assert await lines_of(http, loki, '{app="ingress"} | logfmt | status >= 500') == [
        'level=error status=504 msg="upstream timed out"']
    data = await query_range(http, loki, '{app="ingress"} | logfmt | msg="upstream timed out"')
    assert data["result"][0]["stream"]["msg"] == "upstream timed out"


async def test_limit_and_direction(loki: FakeLoki, http: aiohttp.ClientSession) -> None:
    loki.push(APP, [(at(i), f"app-{i}") for i in range(0, 10, 2)])
    loki.push({"namespace": "playcode", "container": "redis"},
              [(at(i), f"redis-{i}") for i in range(1, 10, 2)])
    q = '{namespace="playcode"}'
    backward = await query_range(http, loki, q, limit="3")
    assert sum(len(s["values"]) for s in backward["result"]) == 3
    app_values = next(s["values"] for s in backward["result"] if s["stream"]["container"] ==
                      "playcode-app")
    assert [v[1] for v in app_values] == ["app-8"]
    redis_values = next(s["values"] for s in backward["result"] if s["stream"]["container"] ==
                        "redis")
    assert [v[1] for v in redis_values] == ["redis-9", "redis-7"]  # newest first

    forward = await query_range(http, loki, q, limit="3", direction="FORWARD")
    flat = sorted((int(ts), line) for s in forward["result"] for ts, line in s["values"])
    assert [line for _, line in flat] == ["app-0", "redis-1", "app-2"]
    app_forward = next(s["values"] for s in forward["result"] if s["stream"]["container"] ==
                       "playcode-app")
    assert [v[1] for v in app_forward] == ["app-0", "app-2"]  # oldest first

    assert len(await lines_of(http, loki, q)) == 10  # default limit 100
    status, text = await error_of(http, loki, q, limit="0")
    assert status == 400 and "limit must be a positive value" in text
    status, text = await error_of(http, loki, q, limit="5001")
    assert status == 400 and "max entries limit per query exceeded" in text
    status, text = await error_of(http, loki, q, direction="sideways")
    assert status == 400 and "invalid direction" in text


async def test_time_bounds(loki: FakeLoki, http: aiohttp.ClientSession) -> None:
    loki.push(APP, [(at(s), f"t{s}") for s in (0, 10, 20, 30)] + [(at(-7200), "old")])
    q = '{namespace="playcode"}'
    # start inclusive, end exclusive (ns)
    assert await lines_of(http, loki, q, start=str(at(10)), end=str(at(30))) == ["t20", "t10"]
    # Unix seconds (<= 10 digits) and float seconds
    assert await lines_of(http, loki, q, start=str(T0 // NS + 10), end=str(T0 // NS + 21)
                          ) == ["t20", "t10"]
    assert await lines_of(http, loki, q, start=f"{T0 // NS + 9.5}", end=f"{T0 // NS + 10.5}"
                          ) == ["t10"]
    # RFC3339 / RFC3339Nano
    assert await lines_of(http, loki, q, start="2023-11-14T22:13:30Z",
                          end="2023-11-14T23:13:40.000000001+01:00") == ["t20", "t10"]
    # defaults: [now - 1h, now) with the injected clock (now = T0 + 600 s)
    async with http.get(f"{loki.url}/loki/api/v1/query_range", params={"query": q}) as resp:
        body = await resp.json()
    assert sorted(v[1] for s in body["data"]["result"] for v in s["values"]) == [
        "t0", "t10", "t20", "t30"]
    status, text = await error_of(http, loki, q, start=str(at(30)), end=str(at(10)))
    assert status == 400 and "end timestamp must not be before" in text
    status, _ = await error_of(http, loki, q, start="yesterday")
    assert status == 400

    assert parse_time_ns("1700000000", 0) == T0
    assert parse_time_ns("1700000000.25", 0) == T0 + NS // 4
    assert parse_time_ns("2023-11-14T22:13:20.5Z", 0) == T0 + NS // 2


async def test_non_utf8_lines(loki: FakeLoki, http: aiohttp.ClientSession) -> None:
    raw = b"bad \xff\xfe byte \xe2\x82 end \xe2\x82\xac ok"
    loki.push(APP, [(at(1), raw)])
    data = await query_range(http, loki, '{namespace="playcode"} |= "byte"')
    line = data["result"][0]["values"][0][1]
    # Go's JSON encoder: one U+FFFD per invalid byte; valid multi-byte runes kept
    assert line == "bad \ufffd\ufffd byte \ufffd\ufffd end \u20ac ok"
    assert go_json_string(raw) == line
    assert await lines_of(http, loki, '{namespace="playcode"} |= "\\xff\\xfe"') == [line]
    assert await lines_of(http, loki, '{namespace="playcode"} | json | __error__="JSONParserErr"'
                          ) == [line]


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ('{namespace="playcode"', "parse error at line 1"),
        ('{namespace="playcode}', "literal not terminated"),
        ("{}", "syntax error"),
        ('{namespace "playcode"}', "syntax error"),
        ('{namespace="\\q"}', "invalid char escape"),
        ('{namespace="playcode"} |= ', "syntax error: unexpected $end"),
        ('{namespace="playcode"} |~ "("', "error parsing regexp"),
        ('{namespace="playcode"} | res_status >= "x"', "syntax error"),
        ("", "syntax error"),
    ],
)
async def test_parse_errors(loki: FakeLoki, http: aiohttp.ClientSession, query: str,
                            fragment: str) -> None:
    status, text = await error_of(http, loki, query)
    assert status == 400
    assert text.startswith("parse error")
    assert fragment in text


async def test_empty_compatible_matchers_rejected(loki: FakeLoki, http: aiohttp.ClientSession
                                                  ) -> None:
    expected = (
        "parse error : queries require at least one regexp or equality matcher that does not "
        'have an empty-compatible value. For instance, app=~".*" does not meet this requirement, '
        'but app=~".+" will'
    )
    for query in ('{app=~".*"}', '{app!="x"}', '{app=""}'):
        status, text = await error_of(http, loki, query)
        assert (status, text) == (400, expected)
    status, _ = await error_of(http, loki, '{app=~".+"}')
    assert status == 200


async def test_post_form_and_recorded_queries(loki: FakeLoki, http: aiohttp.ClientSession
                                              ) -> None:
    loki.push(APP, [(at(1), "x")])
    form = {"query": '{container="playcode-app"}', "start": str(at(0)), "end": str(at(5)),
            "limit": "50", "direction": "forward"}
    async with http.post(f"{loki.url}/loki/api/v1/query_range", data=form,
                         headers={"X-Scope-OrgID": "playcode"}) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["data"]["result"][0]["values"] == [[str(at(1)), "x"]]
    recorded = loki.queries[-1]
    assert recorded.method == "POST"
    assert recorded.params == form
    assert recorded.query == '{container="playcode-app"}'
    assert recorded.headers["X-Scope-OrgID"] == "playcode"


async def test_fault_injection(loki: FakeLoki, http: aiohttp.ClientSession) -> None:
    loki.push(APP, [(at(1), "x")])
    q = '{namespace="playcode"}'
    loki.fail_next(503, times=2)
    for _ in range(2):
        status, text = await error_of(http, loki, q)
        assert status == 503 and text.strip() == "Service Unavailable"
    assert await lines_of(http, loki, q) == ["x"]

    loki.fail_next(429, times=None, path="/loki/api/v1/query_range")
    async with http.get(f"{loki.url}/ready") as resp:
        assert resp.status == 200
    assert (await error_of(http, loki, q))[0] == 429
    assert (await error_of(http, loki, q))[0] == 429
    loki.clear_faults()

    loki.delay(0.3, times=1)
    started = time.monotonic()
    assert await lines_of(http, loki, q) == ["x"]
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    await lines_of(http, loki, q)
    assert time.monotonic() - started < 0.3

    loki.delay(5)
    with pytest.raises(TimeoutError):
        async with http.get(f"{loki.url}/loki/api/v1/query_range", params={"query": q},
                            timeout=aiohttp.ClientTimeout(total=0.2)):
            pass
    loki.delay(0)


async def test_labels_endpoints(loki: FakeLoki, http: aiohttp.ClientSession) -> None:
    loki.push(APP, [(at(1), "a")])
    loki.push({"namespace": "playcode", "container": "redis", "pod": "redis-0"}, [(at(2), "b")])
    params = {"start": str(at(0)), "end": str(at(10))}
    async with http.get(f"{loki.url}/loki/api/v1/labels", params=params) as resp:
        assert await resp.json() == {"status": "success",
                                     "data": ["container", "namespace", "pod"]}
    async with http.get(f"{loki.url}/loki/api/v1/label/container/values", params=params) as resp:
        assert (await resp.json())["data"] == ["playcode-app", "redis"]
    async with http.get(f"{loki.url}/loki/api/v1/labels",
                        params={"start": str(at(100)), "end": str(at(200))}) as resp:
        assert (await resp.json())["data"] == []


async def test_metric_queries(loki: FakeLoki, http: aiohttp.ClientSession) -> None:
    loki.push(APP, [(at(s), '{"level":"error","res_status":500}') for s in (1, 2, 3, 61)])
    loki.push({"namespace": "playcode", "container": "redis"},
              [(at(5), '{"level":"error","res_status":500}')])
    data = await query_range(
        http, loki,
        'sum by (container) (count_over_time({namespace="playcode"} | json | res_status >= 500'
        ' [1m]))',
        start=str(at(60)), end=str(at(120)), step="60",
    )
    assert data["resultType"] == "matrix"
    series = {r["metric"]["container"]: r["values"] for r in data["result"]}
    assert series["playcode-app"] == [[T0 // NS + 60, "3"], [T0 // NS + 120, "1"]]
    assert series["redis"] == [[T0 // NS + 60, "1"]]

    total = await query_range(http, loki, 'sum(rate({namespace="playcode"}[1m]))',
                              start=str(at(60)), end=str(at(60)), step="1")
    assert total["result"] == [{"metric": {}, "values": [[T0 // NS + 60, "0.06666666666666667"]]}]

    # a parser error in a metric query is a query error, as in Loki
    loki.push(APP, [(at(30), "not json")])
    status, text = await error_of(http, loki, 'count_over_time({namespace="playcode"} | json'
                                  " [1m])", start=str(at(60)), end=str(at(60)))
    assert status == 400 and "pipeline error: 'JSONParserErr'" in text

    async with http.get(f"{loki.url}/loki/api/v1/query",
                        params={"query": 'count_over_time({container="redis"}[10m])',
                                "time": str(at(60))}) as resp:
        body = await resp.json()
    assert body["data"]["resultType"] == "vector"
    assert body["data"]["result"][0]["value"] == [T0 // NS + 60, "1"]
    async with http.get(f"{loki.url}/loki/api/v1/query",
                        params={"query": '{container="redis"}'}) as resp:
        assert resp.status == 400
        assert "log queries are not supported as an instant query type" in await resp.text()
