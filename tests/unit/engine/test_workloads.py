"""The workload abstraction maps every pod-creating kind to its pod spec."""

from __future__ import annotations

import pytest

from modelward.engine.workloads import (
    TEMPLATE_POINTERS,
    UnsupportedKind,
    json_pointer,
    workload_from_object,
)

SPEC = {"containers": [{"name": "c", "image": "i"}]}


def _template() -> dict[str, object]:
    return {"metadata": {"labels": {"app": "m"}, "annotations": {"a": "b"}}, "spec": SPEC}


@pytest.mark.parametrize(
    ("obj", "pointer"),
    [
        (
            {
                "kind": "Pod",
                "metadata": {"name": "p", "labels": {"app": "m"}, "annotations": {"a": "b"}},
                "spec": SPEC,
            },
            "/spec",
        ),
        (
            {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": _template()}},
            "/spec/template/spec",
        ),
        (
            {"kind": "StatefulSet", "metadata": {"name": "d"}, "spec": {"template": _template()}},
            "/spec/template/spec",
        ),
        (
            {"kind": "DaemonSet", "metadata": {"name": "d"}, "spec": {"template": _template()}},
            "/spec/template/spec",
        ),
        (
            {"kind": "ReplicaSet", "metadata": {"name": "d"}, "spec": {"template": _template()}},
            "/spec/template/spec",
        ),
        (
            {"kind": "Job", "metadata": {"name": "d"}, "spec": {"template": _template()}},
            "/spec/template/spec",
        ),
        (
            {
                "kind": "CronJob",
                "metadata": {"name": "d"},
                "spec": {"jobTemplate": {"spec": {"template": _template()}}},
            },
            "/spec/jobTemplate/spec/template/spec",
        ),
    ],
)
def test_every_kind_maps_to_its_pod_spec(obj: dict[str, object], pointer: str) -> None:
    w = workload_from_object(obj, namespace="ns")
    assert w.pod_spec == SPEC
    assert json_pointer(w.pod_spec_pointer) == pointer
    assert w.labels == {"app": "m"} and w.annotations == {"a": "b"}
    assert w.namespace == "ns"
    assert [c.name for c in w.containers()] == ["c"]


def test_all_kinds_are_covered() -> None:
    assert set(TEMPLATE_POINTERS) >= {
        "Pod",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "Job",
        "CronJob",
    }


def test_other_kinds_are_unsupported() -> None:
    with pytest.raises(UnsupportedKind):
        workload_from_object({"kind": "ConfigMap"})


def test_generate_name_and_malformed_parts_do_not_crash() -> None:
    w = workload_from_object(
        {
            "kind": "Pod",
            "metadata": {"generateName": "model-"},
            "spec": {"containers": ["not-a-dict", {"name": "ok"}], "initContainers": "bad"},
        }
    )
    assert w.name == "model-*"
    assert [c.name for c in w.containers()] == ["ok"]


def test_pointer_escaping() -> None:
    assert json_pointer(("spec", "nodeSelector", "nvidia.com/gpu.present", "a~b")) == (
        "/spec/nodeSelector/nvidia.com~1gpu.present/a~0b"
    )
