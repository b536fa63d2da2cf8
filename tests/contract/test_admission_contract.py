"""AdmissionReview v1 over HTTPS against the real app: allowed, denied, patched, warned,
malformed bodies, huge objects, unknown paths."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from tests.contract.conftest import Server
from tests.unit.engine.builders import apply_json_patch, compliant_pod


def review(
    obj: dict[str, Any] | None,
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    kind: str | None = None,
    sub_resource: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    kind = kind or (obj or old or {}).get("kind", "Pod")
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "", "version": "v1", "kind": kind},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "serving-a",
        "name": ((obj or old or {}).get("metadata") or {}).get("name", ""),
        "operation": operation,
        "object": obj,
        "oldObject": old,
        "dryRun": dry_run,
        "userInfo": {"username": "alice"},
    }
    if sub_resource:
        request["subResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def _bad_image_pod() -> dict[str, Any]:
    pod = compliant_pod()
    pod["spec"]["containers"][0]["image"] = "nginx:latest"
    return pod


async def test_compliant_pod_is_allowed(server: Server) -> None:
    body = review(compliant_pod())
    status, answer = await server.post("/validate", body)
    assert status == 200
    assert answer["response"] == {"uid": body["request"]["uid"], "allowed": True}


async def test_violation_is_denied_with_rule_container_and_fix(server: Server) -> None:
    status, answer = await server.post("/validate", review(_bad_image_pod()))
    response = answer["response"]
    assert status == 200 and response["allowed"] is False
    message = response["status"]["message"]
    assert response["status"]["code"] == 403
    assert "[MW-IMG-001]" in message and 'container "server"' in message and "Fix:" in message


async def test_patch_mode_returns_targeted_json_patch(server: Server) -> None:
    pod = compliant_pod()
    del pod["spec"]["automountServiceAccountToken"]
    pod["spec"]["containers"][0]["securityContext"] = {}
    _, answer = await server.post("/mutate", review(pod))
    response = answer["response"]
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    assert {op["path"] for op in ops} == {
        "/spec/automountServiceAccountToken",
        "/spec/containers/0/securityContext/allowPrivilegeEscalation",
        "/spec/containers/0/securityContext/capabilities",
    }
    assert any("modelward patched: [MW-ISO-013]" in w for w in response["warnings"])
    _, again = await server.post("/validate", review(apply_json_patch(pod, ops)))
    assert again["response"]["allowed"] is True


async def test_audit_mode_warns_and_admits(server: Server) -> None:
    pod = compliant_pod()
    pod["spec"]["containers"][0]["env"] = [
        {"name": "SYSTEM_PROMPT", "value": "You are a pirate. Speak like one."}
    ]
    _, answer = await server.post("/validate", review(pod))
    response = answer["response"]
    assert response["allowed"] is True
    assert any("[MW-SEC-002]" in w for w in response["warnings"])


async def test_deletes_and_unchanged_updates_are_never_blocked(server: Server) -> None:
    bad = _bad_image_pod()
    _, answer = await server.post("/validate", review(None, operation="DELETE", old=bad))
    assert answer["response"]["allowed"] is True
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "serving-a"},
        "spec": {"replicas": 3, "template": {"metadata": {}, "spec": bad["spec"]}},
    }
    scaled = json.loads(json.dumps(deployment))
    scaled["spec"]["replicas"] = 0
    _, answer = await server.post("/validate", review(scaled, operation="UPDATE", old=deployment))
    assert answer["response"]["allowed"] is True


async def test_workload_update_changing_template_is_judged(server: Server) -> None:
    good = compliant_pod()
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "serving-a"},
        "spec": {"template": {"metadata": {}, "spec": good["spec"]}},
    }
    changed = json.loads(json.dumps(deployment))
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:latest"
    _, answer = await server.post("/validate", review(changed, operation="UPDATE", old=deployment))
    assert answer["response"]["allowed"] is False


async def test_ephemeral_container_is_judged_on_what_it_adds(server: Server) -> None:
    pod = compliant_pod()
    debug = json.loads(json.dumps(pod))
    debug["spec"]["ephemeralContainers"] = [
        {"name": "debug", "image": "busybox", "securityContext": {"privileged": True}}
    ]
    _, answer = await server.post(
        "/validate", review(debug, operation="UPDATE", old=pod, sub_resource="ephemeralcontainers")
    )
    message = answer["response"]["status"]["message"]
    assert answer["response"]["allowed"] is False and 'ephemeral container "debug"' in message


async def test_malformed_reviews_get_400_with_the_reason(server: Server) -> None:
    cases = [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (
            json.dumps(
                {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}
            ).encode(),
            "v1 AdmissionReview",
        ),
        (
            json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(),
            "no request",
        ),
        (
            json.dumps(
                {
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "request": {"kind": {"kind": "Pod"}},
                }
            ).encode(),
            "uid",
        ),
        (json.dumps(review({"kind": "Pod"}, operation="PATCH")).encode(), "operation"),
    ]
    for body, words in cases:
        status, answer = await server.post("/validate", body)
        assert status == 400, body
        assert answer["response"]["allowed"] is False
        message = answer["response"]["status"]["message"]
        assert words in message and "Fix:" in message


async def test_unknown_paths_are_errors_never_allowed(server: Server) -> None:
    for path in ("/", "/validate-pods", "/mutate/extra"):
        status, answer = await server.post(path, review(_bad_image_pod()))
        assert status == 404 and "allowed" not in json.dumps(answer)


async def test_huge_objects_are_answered(server: Server) -> None:
    pod = compliant_pod()
    pod["spec"]["containers"][0]["env"] = [
        {"name": f"V{i}", "value": "x" * 100} for i in range(1_500)
    ]
    status, answer = await server.post("/validate", review(pod))
    assert status == 200 and answer["response"]["allowed"] is True
    too_big = b'{"a": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    status, answer = await server.post("/validate", too_big)
    assert status == 413 and "larger than" in answer["response"]["status"]["message"]


async def test_objects_with_odd_shapes_do_not_crash(server: Server) -> None:
    for obj in (
        {"kind": "Pod", "metadata": None, "spec": None},
        {"kind": "Pod", "spec": {"containers": [None, 1, "x"]}},
        {"kind": "Deployment", "spec": {"template": "nope"}},
        {"kind": "ConfigMap", "data": {}},
    ):
        status, answer = await server.post("/validate", review(obj))
        assert status == 200 and "allowed" in answer["response"], obj


async def test_probe_label_is_always_denied(server: Server) -> None:
    pod = compliant_pod()
    pod["metadata"]["labels"]["modelward.io/probe"] = "deny"
    _, answer = await server.post("/validate", review(pod))
    assert (
        answer["response"]["allowed"] is False
        and "modelward probe" in answer["response"]["status"]["message"]
    )


async def test_metrics_and_readiness(server: Server) -> None:
    await server.post("/validate", review(_bad_image_pod()))
    async with server.session.get(server.health_url + "/metrics") as r:
        text = await r.text()
    assert (
        'modelward_admission_requests_total{decision="denied",kind="Pod",operation="CREATE",webhook="validate"}'
        in text
    )
    assert (
        'modelward_violations_total{mode="Enforce",namespace="serving-a",policy="images",rule="MW-IMG-001"}'
        in text
    )
    assert "modelward_admission_duration_seconds_bucket" in text
    async with server.session.get(server.health_url + "/readyz") as r:
        assert r.status == 200
    server.state.ready = False
    async with server.session.get(server.health_url + "/readyz") as r:
        assert r.status == 503
