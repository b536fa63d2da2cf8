"""Helpers for end-to-end tests: policies applied and proven active before a test relies on them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import yaml

from modelward_dev.controlplane import ToolRunner
from tests.unit.engine.builders import compliant_pod


def apply(kubectl: ToolRunner, *objects: dict[str, Any], extra: tuple[str, ...] = ()) -> Any:
    text = yaml.safe_dump_all(objects)
    return kubectl("apply", *extra, "-f", "-", input=text)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def get_json(kubectl: ToolRunner, *args: str) -> dict[str, Any]:
    result = kubectl("get", *args, "-o", "json", check=True)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def cluster_policy(
    name: str, namespace: str, sections: dict[str, Any], mode: str = "Enforce"
) -> dict[str, Any]:
    return {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": "ClusterModelPolicy",
        "metadata": {"name": name},
        "spec": {"mode": mode, "match": {"namespaces": [namespace]}, **sections},
    }


def apply_policy(kubectl: ToolRunner, policy: dict[str, Any]) -> dict[str, Any]:
    """Apply a policy and wait until the operator reports it Ready for this generation."""
    result = apply(kubectl, policy)
    assert result.returncode == 0, result.stderr
    kind = policy["kind"].lower()
    args = [kind, policy["metadata"]["name"]]
    if policy["metadata"].get("namespace"):
        args += ["-n", policy["metadata"]["namespace"]]
    state: dict[str, Any] = {}

    def ready() -> bool:
        obj = get_json(kubectl, *args)
        state["obj"] = obj
        status = obj.get("status") or {}
        return status.get("observedGeneration") == obj["metadata"]["generation"] and any(
            c.get("type") == "Ready" for c in status.get("conditions") or []
        )

    wait_for(f"policy {policy['metadata']['name']} to be observed", ready)
    return state["obj"]


def pod(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """A pod that complies with every rule family at default settings."""
    body = compliant_pod(**spec)
    body["metadata"] = {"name": name, "namespace": namespace, "labels": {"app": name}}
    return body


def workload(kind: str, name: str, namespace: str, pod_spec: dict[str, Any]) -> dict[str, Any]:
    labels = {"app": name}
    template = {"metadata": {"labels": labels}, "spec": pod_spec}
    api = {"Job": "batch/v1", "CronJob": "batch/v1", "ReplicationController": "v1"}.get(
        kind, "apps/v1"
    )
    spec: dict[str, Any]
    if kind == "CronJob":
        spec = {
            "schedule": "*/5 * * * *",
            "jobTemplate": {
                "spec": {"template": {**template, "spec": {**pod_spec, "restartPolicy": "Never"}}}
            },
        }
    elif kind == "Job":
        spec = {"template": {**template, "spec": {**pod_spec, "restartPolicy": "Never"}}}
    elif kind == "ReplicationController":
        spec = {"selector": labels, "template": template}  # a plain map, not a LabelSelector
    else:
        spec = {"selector": {"matchLabels": labels}, "template": template}
        if kind == "StatefulSet":
            spec["serviceName"] = name
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def default_deny(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "namespace": namespace},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
