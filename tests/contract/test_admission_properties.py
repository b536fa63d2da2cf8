"""Property-based: whatever body arrives at /validate or /mutate, the answer is a well-formed
AdmissionReview (HTTP 200) or a 4xx whose body names the problem; never a 500, never a
traceback, and never ``allowed: true`` for a request the engine cannot judge.

Bodies are arbitrary bytes, arbitrary JSON, and valid reviews of real objects with random
mutations (a value replaced by arbitrary JSON, a key deleted, kinds and operations swapped).
The budget is bounded and derandomized so CI runs the same examples every time.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelward.admission.server import make_admission_app
from modelward.admission.service import AdmissionService
from modelward.observability.metrics import Metrics
from tests.contract.conftest import _state
from tests.contract.test_admission_contract import review
from tests.unit.engine.builders import compliant_pod

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TEMPLATES = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def _objects() -> Iterator[dict[str, Any]]:
    pod = compliant_pod()
    bad = compliant_pod()
    bad["spec"]["containers"][0]["image"] = "nginx:latest"
    bad["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    yield pod
    yield bad
    for kind, pointer in TEMPLATES.items():
        if not pointer:
            continue
        obj: dict[str, Any] = {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "w"}}
        node = obj
        for token in pointer[:-1]:
            node = node.setdefault(token, {})
        node[pointer[-1]] = {"metadata": {"labels": {"app": "w"}}, "spec": bad["spec"]}
        yield obj
    yield {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "i"},
        "spec": {"rules": [{"host": "a.example.com"}]},
    }


OBJECTS = list(_objects())


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


@st.composite
def mutated_reviews(draw: st.DrawFn) -> dict[str, Any]:
    obj = copy.deepcopy(draw(st.sampled_from(OBJECTS)))
    operation = draw(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]))
    old = copy.deepcopy(obj) if operation == "UPDATE" and draw(st.booleans()) else None
    body = review(obj, operation=operation, old=old)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(body) if p]
        path = draw(st.sampled_from(paths))
        parent: Any = body
        for token in path[:-1]:
            parent = parent[token]
        action = draw(st.sampled_from(["replace", "delete", "kind"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "kind":
            body["request"]["kind"]["kind"] = draw(st.sampled_from([*TEMPLATES, "Ingress", "X"]))
        else:
            parent[path[-1]] = draw(json_values)
    return body


def _dig(node: Any, pointer: tuple[str, ...]) -> Any:
    for token in pointer:
        if not isinstance(node, dict):
            return None
        node = node.get(token)
    return node


def cannot_be_judged(body: Any) -> bool:
    """An oracle written from the documented contract, independent of admission/intake.py:
    a CREATE or UPDATE of a judged kind (no subresource) whose object is missing, of another
    kind, or whose pod spec (or Ingress spec) is not an object."""
    request = body.get("request") if isinstance(body, dict) else None
    if not isinstance(request, dict):
        return False
    kind = (
        (request.get("kind") or {}).get("kind") if isinstance(request.get("kind"), dict) else None
    )
    if request.get("operation") not in ("CREATE", "UPDATE") or request.get("subResource"):
        return False
    if kind not in TEMPLATES and kind != "Ingress":
        return False
    obj = request.get("object")
    if not isinstance(obj, dict) or not obj or obj.get("kind") != kind:
        return True
    if kind == "Ingress":
        return not isinstance(obj.get("spec"), dict)
    return not isinstance(_dig(obj, (*TEMPLATES[kind], "spec")), dict)


@pytest.fixture(scope="module")
def client() -> Iterator[tuple[asyncio.AbstractEventLoop, TestClient[Any, Any]]]:
    loop = asyncio.new_event_loop()
    app = make_admission_app(
        service=AdmissionService(state=_state()), metrics=Metrics.create(), deadline_seconds=5.0
    )
    test_client: TestClient[Any, Any] = TestClient(TestServer(app), loop=loop)
    loop.run_until_complete(test_client.start_server())
    yield loop, test_client
    loop.run_until_complete(test_client.close())
    loop.close()


def _post(
    client: tuple[asyncio.AbstractEventLoop, TestClient[Any, Any]], path: str, body: bytes
) -> tuple[int, Any]:
    loop, test_client = client

    async def send() -> tuple[int, Any]:
        async with test_client.post(path, data=body) as response:
            text = await response.text()
            assert "Traceback" not in text
            return response.status, json.loads(text)

    return loop.run_until_complete(send())


def _assert_contract(status: int, answer: Any, sent: Any) -> None:
    assert status != 500 and (status == 200 or 400 <= status < 500), status
    response = answer["response"]
    if status != 200:
        assert response["allowed"] is False and response["status"]["message"]
        return
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert response["uid"] == sent["request"]["uid"]
    assert isinstance(response["allowed"], bool)
    # The engine never crashes on what it is sent: an internal error is a bug, not an answer.
    assert (response.get("status") or {}).get("code") != 500, response
    if cannot_be_judged(sent):
        assert response["allowed"] is False, sent


@pytest.fixture(autouse=True)
def _errors_are_failures(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.ERROR, logger="modelward"):
        yield
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@PROPERTY_SETTINGS
@given(body=mutated_reviews(), path=st.sampled_from(["/validate", "/mutate"]))
def test_mutated_reviews_get_a_well_formed_answer(
    client: tuple[asyncio.AbstractEventLoop, TestClient[Any, Any]], body: Any, path: str
) -> None:
    status, answer = _post(client, path, json.dumps(body).encode())
    _assert_contract(status, answer, body)


@PROPERTY_SETTINGS
@given(body=json_values)
def test_arbitrary_json_gets_a_4xx_with_a_message(
    client: tuple[asyncio.AbstractEventLoop, TestClient[Any, Any]], body: Any
) -> None:
    status, answer = _post(client, "/validate", json.dumps(body).encode())
    assert 400 <= status < 500 and answer["response"]["status"]["message"]


@PROPERTY_SETTINGS
@given(body=st.binary(max_size=200))
def test_arbitrary_bytes_get_a_4xx_with_a_message(
    client: tuple[asyncio.AbstractEventLoop, TestClient[Any, Any]], body: bytes
) -> None:
    status, answer = _post(client, "/mutate", body)
    assert 400 <= status < 500 and answer["response"]["status"]["message"]
