"""Before evaluation: unparseable bodies get a 400 AdmissionReview error, requests the engine
cannot judge and objects beyond the per-review bounds are denied with the reason, and metric
labels stay in closed sets whatever the request says."""

from __future__ import annotations

import json
import re
from typing import Any

from modelward.admission.intake import ReviewLimits
from tests.contract.conftest import Server, ServerOptions, start_server
from tests.contract.test_admission_contract import review
from tests.unit.engine.builders import compliant_pod


def _deployment(template: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "serving-a"},
        "spec": {"template": template},
    }


async def test_deeply_nested_json_gets_a_400_admission_review_error(server: Server) -> None:
    for depth in (1100, 5000, 100_000):
        body = b'{"a": ' * depth + b"1" + b"}" * depth
        status, answer = await server.post("/validate", body)
        assert status == 400, depth
        message = answer["response"]["status"]["message"]
        assert answer["response"]["allowed"] is False and "nests JSON too deeply" in message


async def test_a_review_nesting_deeply_inside_its_object_gets_a_clear_answer(
    server: Server,
) -> None:
    """Below the parser's depth limit, a deep structure inside the pod (anywhere the engine
    might walk: a container field, an annotation map, a volume) is answered, never a crash."""
    deep = "__DEEP__"  # replaced in the body's text: json.dumps itself cannot nest this deep
    pod = compliant_pod()
    pod["spec"]["containers"][0]["x-deep"] = deep
    pod["spec"]["volumes"] = [{"name": "v", "csi": {"driver": "d", "volumeAttributes": deep}}]
    pod["metadata"]["annotations"] = {"deep": deep}
    nested = '{"a": ' * 1000 + "1" + "}" * 1000
    body = json.dumps(review(pod)).replace('"__DEEP__"', nested).encode()
    for path in ("/validate", "/mutate"):
        status, answer = await server.post(path, body)
        assert status == 200, (path, status, answer)
        response = answer["response"]
        if not response["allowed"]:
            assert response["status"]["code"] == 400, (path, answer)
            assert "nests too deeply" in response["status"]["message"], (path, answer)


async def test_requests_the_engine_cannot_judge_are_denied_with_the_reason(
    server: Server,
) -> None:
    pod = compliant_pod()
    cases: list[tuple[dict[str, Any], str]] = [
        (review(None, kind="Pod"), "carries no object"),
        (review({}, kind="Pod"), "carries no object"),
        (review(compliant_pod(), kind="Deployment"), "object's kind is 'Pod'"),
        (review({**pod, "kind": "ConfigMap"}, kind="Pod"), "object's kind is 'ConfigMap'"),
        (review({**pod, "spec": "nope"}), "spec is not an object"),
        (review({**pod, "spec": None}), "spec is not an object"),
        (review(_deployment("nope")), "spec.template is not an object"),
        (review(_deployment({"spec": []})), "spec.template.spec is not an object"),
        (
            review({**pod, "spec": {**pod["spec"], "containers": {"a": {}}}}),
            "containers is not a list",
        ),
        (
            review({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "spec": 1}),
            "spec is not an object",
        ),
        (review(None, kind="Pod", operation="UPDATE", old=pod), "carries no object"),
    ]
    for body, words in cases:
        for path in ("/validate", "/mutate"):
            status, answer = await server.post(path, body)
            response = answer["response"]
            assert status == 200 and response["allowed"] is False, (path, words)
            assert response["status"]["code"] == 400
            assert (
                words in response["status"]["message"] and "Fix:" in response["status"]["message"]
            )


async def test_deletes_connects_and_subresources_stay_admitted(server: Server) -> None:
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "spec": {"replicas": 0}}
    for body in (
        review(None, kind="Pod", operation="DELETE"),
        review(None, kind="Pod", operation="CONNECT"),
        review(scale, kind="Scale", operation="UPDATE", sub_resource="scale"),
        review(
            {"kind": "Deployment"}, kind="Deployment", operation="UPDATE", sub_resource="status"
        ),
    ):
        _, answer = await server.post("/validate", body)
        assert answer["response"]["allowed"] is True, body


async def test_objects_beyond_the_bounds_are_denied_cheaply_with_the_limit() -> None:
    limits = ReviewLimits(max_object_bytes=256 * 1024, max_containers=10, max_env=50)
    async with start_server(ServerOptions(limits=limits)) as server:
        many = compliant_pod()
        many["spec"]["containers"] = many["spec"]["containers"] * 8
        many["spec"]["initContainers"] = many["spec"]["containers"][:3]
        env = compliant_pod()
        env["spec"]["containers"][0]["env"] = [{"name": f"V{i}", "value": "x"} for i in range(51)]
        big = compliant_pod()
        big["metadata"]["annotations"] = {"a": "x" * 300 * 1024}
        for pod, words in (
            (many, "it has 11 containers (init and ephemeral included), more than the 10"),
            (env, "it has 51 environment entries"),
            (big, "bytes in its AdmissionReview (1 object), more than the 262144"),
        ):
            _status, answer = await server.post("/validate", review(pod))
            response = answer["response"]
            assert response["allowed"] is False and response["status"]["code"] == 413
            assert words in response["status"]["message"], response["status"]["message"]
            assert "Fix:" in response["status"]["message"]
        async with server.session.get(server.health_url + "/metrics") as r:
            text = await r.text()
        assert 'decision="too_large",kind="Pod"' in text


async def test_label_values_come_from_closed_sets(server: Server) -> None:
    for i in range(30):
        body = review({"kind": f"Kind{i}", "metadata": {"name": "x"}}, kind=f"Kind{i}")
        body["request"]["namespace"] = f"invented-{i}"
        await server.post("/validate", body)
        bad = compliant_pod()
        bad["spec"]["containers"][0]["image"] = "nginx:latest"
        body = review(bad)
        body["request"]["namespace"] = f"invented-{i}"
        await server.post("/validate", body)
    async with server.session.get(server.health_url + "/metrics") as r:
        text = await r.text()
    kinds = set(re.findall(r'kind="([^"]*)"', text))
    namespaces = set(re.findall(r'namespace="([^"]*)"', text))
    assert kinds <= {"Pod", "other"}, kinds
    assert namespaces <= {"serving-a", "other"}, namespaces
    assert 'modelward_violations_total{mode="Enforce",namespace="other"' in text
    assert "invented" not in text and "Kind1" not in text
    assert json.dumps(text).count("\\n") < 400
