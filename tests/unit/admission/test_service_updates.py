"""The admission service on Pod UPDATEs in Patch mode (issue 9 #1): validation denies what an
update introduces and cannot be fixed; mutation fixes a new ephemeral container in place."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from modelward.admission.review import ReviewRequest
from modelward.admission.service import AdmissionService
from modelward.engine import NamespaceFacts
from modelward.engine.rules.integrity import KEY_ANNOTATION_PREFIX
from modelward.state import ClusterState
from tests.unit.engine.builders import apply_json_patch, public_key_pem
from tests.unit.engine.test_pod_updates import PATCH, _debug_container, admitted


def service() -> AdmissionService:
    state = ClusterState()
    state.put_namespace(NamespaceFacts("serving-a"))
    state.put_policy(
        (PATCH.ref.kind, PATCH.ref.namespace, PATCH.ref.name),
        policy=PATCH,
        error=None,
        generation=1,
        resource_version="1",
    )
    state.ready = True
    return AdmissionService(state=state)


def request(old: dict[str, Any], new: dict[str, Any], sub_resource: str = "") -> ReviewRequest:
    return ReviewRequest(
        uid="u",
        kind="Pod",
        operation="UPDATE",
        namespace="serving-a",
        name="model",
        sub_resource=sub_resource,
        obj=new,
        old_obj=old,
        dry_run=True,
    )


def test_a_key_annotation_swap_is_denied_not_admitted() -> None:
    old = admitted()
    new = copy.deepcopy(old)
    key = next(k for k in new["metadata"]["annotations"] if k.startswith(KEY_ANNOTATION_PREFIX))
    new["metadata"]["annotations"][key] = public_key_pem()
    svc = service()
    assert "patch" not in svc.mutate(request(old, new)).review["response"]
    response = svc.validate(request(old, new)).review["response"]
    assert response["allowed"] is False
    assert "[MW-INT-006]" in response["status"]["message"]


def test_a_verifier_image_change_is_denied() -> None:
    old = admitted()
    new = copy.deepcopy(old)
    new["spec"]["initContainers"][-1]["image"] = "evil.example.com/verify:1"
    response = service().validate(request(old, new)).review["response"]
    assert response["allowed"] is False and "[MW-INT-006]" in response["status"]["message"]


def test_a_new_ephemeral_container_is_patched_then_admitted() -> None:
    old = admitted()
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [_debug_container()]
    svc = service()
    outcome = svc.mutate(request(old, new, "ephemeralcontainers"))
    assert outcome.label == "patched"
    patch = json.loads(base64.b64decode(outcome.review["response"]["patch"]))
    assert all(op["path"].startswith("/spec/ephemeralContainers/0/") for op in patch)
    fixed = apply_json_patch(new, patch)
    debug = fixed["spec"]["ephemeralContainers"][0]
    assert debug["volumeMounts"][0]["readOnly"] is True
    assert "ALL" in debug["securityContext"]["capabilities"]["drop"]
    response = svc.validate(request(old, fixed, "ephemeralcontainers")).review["response"]
    assert response["allowed"] is True


def test_a_pod_update_without_old_object_is_never_patched_and_is_denied() -> None:
    new = admitted()
    new["spec"]["ephemeralContainers"] = [_debug_container()]
    svc = service()
    broken = request(new, new)
    broken = ReviewRequest(**{**broken.__dict__, "old_obj": None})
    assert "patch" not in svc.mutate(broken).review["response"]
    assert svc.validate(broken).review["response"]["allowed"] is False
