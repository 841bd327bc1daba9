"""The kube client's typed seam, on the wire: a 2xx answer that is not a JSON object (a proxy's
HTML page, an array, an empty body) is a KubeError naming the request, never a ValueError or a
list handed to code that reads an object. A wire-level fake (aiohttp on 127.0.0.1) answers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes_asyncio import client as k8s

from medic.clients.kube.client import KubeClient, RetryPolicy
from medic.clients.kube.errors import KubeError

ANSWERS: dict[str, tuple[str, str]] = {  # path -> (content type, body)
    "/api/v1/namespaces/ns/pods/object": ("application/json", '{"kind": "Pod", "metadata": {"name": "p"}}'),
    "/api/v1/namespaces/ns/pods/html": ("text/html", "<html>proxy login</html>"),
    "/api/v1/namespaces/ns/pods/array": ("application/json", "[1, 2]"),
    "/api/v1/namespaces/ns/pods/empty": ("application/json", ""),
    "/api/v1/namespaces/ns/pods/log": ("text/plain", "line 1\nline 2\n"),
    "/api/v1/namespaces/ns/pods": ("application/json", '{"kind": "PodList", "items": [{"metadata": {}}]}'),
    "/api/v1/namespaces/bad/pods": ("application/json", '{"kind": "PodList", "items": ["not an object"]}'),
}


async def answer(request: web.Request) -> web.Response:
    content_type, body = ANSWERS[request.path]
    return web.Response(status=200, body=body.encode(), headers={"Content-Type": content_type})


@pytest.fixture
async def kube() -> AsyncIterator[KubeClient]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    configuration = k8s.Configuration(host=str(server.make_url("")).rstrip("/"))
    client = await KubeClient.from_configuration(configuration, retry=RetryPolicy(attempts=1))
    yield client
    await client.close()
    await server.close()


async def test_an_object_is_read_as_one(kube: KubeClient) -> None:
    assert await kube.get("/api/v1/namespaces/ns/pods/object") == {"kind": "Pod", "metadata": {"name": "p"}}
    assert await kube.list("/api/v1/namespaces/ns/pods") == [{"metadata": {}}]
    assert await kube.request("GET", "/api/v1/namespaces/ns/pods/log", text=True) == "line 1\nline 2\n"


@pytest.mark.parametrize(
    ("name", "says"),
    [("html", "not JSON"), ("array", "not a JSON object (list)"), ("empty", "not JSON")],
)
async def test_an_answer_that_is_not_an_object_is_a_kube_error(
    kube: KubeClient, name: str, says: str
) -> None:
    path = f"/api/v1/namespaces/ns/pods/{name}"
    with pytest.raises(KubeError) as caught:
        await kube.get(path)
    assert f"GET {path}" in str(caught.value) and says in str(caught.value)
    with pytest.raises(KubeError):
        await kube.patch(path, {"metadata": {}}, "application/merge-patch+json")


async def test_a_list_whose_items_are_not_objects_is_a_kube_error(kube: KubeClient) -> None:
    with pytest.raises(KubeError, match="items are not objects"):
        await kube.list("/api/v1/namespaces/bad/pods")
