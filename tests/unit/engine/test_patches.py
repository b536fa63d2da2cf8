"""Remedies become targeted JSONPatch operations that a JSONPatch applier accepts."""

from __future__ import annotations

from modelward.engine.decision import Remedy
from modelward.engine.patches import remedies_to_json_patch
from modelward.engine.workloads import workload_from_object
from tests.unit.engine.builders import apply_json_patch


def _pod() -> dict[str, object]:
    return {
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "i",
                    "securityContext": {"capabilities": {"drop": ["NET_RAW"]}},
                }
            ],
            "tolerations": [{"key": "a"}],
        },
    }


def test_missing_parents_are_created_once() -> None:
    w = workload_from_object(_pod())
    ops = remedies_to_json_patch(
        w,
        [
            Remedy(("securityContext", "runAsNonRoot"), True),
            Remedy(("securityContext", "seccompProfile"), {"type": "RuntimeDefault"}),
        ],
    )
    assert ops == [
        {"op": "add", "path": "/spec/securityContext", "value": {"runAsNonRoot": True}},
        {
            "op": "add",
            "path": "/spec/securityContext/seccompProfile",
            "value": {"type": "RuntimeDefault"},
        },
    ]


def test_append_to_existing_and_missing_lists() -> None:
    obj = _pod()
    w = workload_from_object(obj)
    ops = remedies_to_json_patch(
        w,
        [
            Remedy(
                ("containers", 0, "securityContext", "capabilities", "drop"), "ALL", append=True
            ),
            Remedy(("tolerations",), {"key": "b"}, append=True),
            Remedy(("tolerations",), {"key": "b"}, append=True),  # a second policy asks the same
        ],
    )
    assert ops == [
        {
            "op": "add",
            "path": "/spec/containers/0/securityContext/capabilities/drop/-",
            "value": "ALL",
        },
        {"op": "add", "path": "/spec/tolerations/-", "value": {"key": "b"}},
    ]
    patched = apply_json_patch(obj, ops)
    assert patched["spec"]["tolerations"] == [{"key": "a"}, {"key": "b"}]
    assert obj["spec"]["tolerations"] == [{"key": "a"}]  # the input is never mutated


def test_satisfied_remedies_emit_nothing() -> None:
    w = workload_from_object(
        {"kind": "Pod", "metadata": {}, "spec": {"automountServiceAccountToken": False}}
    )
    assert remedies_to_json_patch(w, [Remedy(("automountServiceAccountToken",), False)]) == []
    assert remedies_to_json_patch(w, []) == []


def test_setting_a_list_item_replaces_it() -> None:
    obj = {"kind": "Pod", "metadata": {}, "spec": {"volumes": [{"name": "a"}, {"name": "b"}]}}
    ops = remedies_to_json_patch(workload_from_object(obj), [Remedy(("volumes", 1), {"name": "c"})])
    assert ops == [{"op": "replace", "path": "/spec/volumes/1", "value": {"name": "c"}}]
    assert apply_json_patch(obj, ops)["spec"]["volumes"] == [{"name": "a"}, {"name": "c"}]
