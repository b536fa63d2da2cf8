"""StateResync: full lists replace each kind, so deletions a broken watch missed disappear."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from modelward.controller import resync as resync_module
from modelward.controller.observe import observe_object
from modelward.controller.resync import StateResync
from modelward.state import ClusterState, PolicyKey


def _obj(name: str, rv: str, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": rv, "generation": 1}
    if namespace:
        meta["namespace"] = namespace
    return {"metadata": meta, **extra}


DENY = {"spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
ISOLATION = {"spec": {"match": {"namespaces": ["a"]}, "isolation": {}}}
EXCEPTION = {
    "spec": {
        "policy": {"kind": "ClusterModelPolicy", "name": "iso"},
        "rules": ["MW-ISO-002"],
        "workloads": {"names": ["llm"]},
        "justification": "vendor image runs as root until 2.0",
        "approvedBy": "security",
        "approvedAt": "2026-01-01T00:00:00Z",
        "expiresAt": "2026-02-01T00:00:00Z",
    }
}


class FakeLister:
    def __init__(self) -> None:
        self.objects: dict[str, list[dict[str, Any]]] = {}
        self.version = "100"
        self.calls: list[str] = []

    def list_kind(self, kind: str) -> tuple[list[dict[str, Any]], str | None]:
        self.calls.append(kind)
        return list(self.objects.get(kind, [])), self.version


class Synced:
    def __init__(self) -> None:
        self.calls: list[tuple[PolicyKey, Any]] = []

    async def __call__(self, key: PolicyKey, status: Mapping[str, Any] | None) -> None:
        self.calls.append((key, status))


def _resync(state: ClusterState, lister: FakeLister, synced: Synced) -> StateResync:
    return StateResync(state=state, lister=lister, sync_policy=synced, interval=60.0)


def _watched(state: ClusterState) -> None:
    """What the watches delivered before they broke."""
    observe_object(state, "Namespace", _obj("a", "1", labels={"serving": "true"}))
    observe_object(state, "NetworkPolicy", _obj("default-deny", "2", "a", **DENY))
    observe_object(state, "Service", _obj("llm", "3", "a", spec={"selector": {"app": "llm"}}))
    observe_object(state, "ClusterModelPolicy", _obj("iso", "4", **ISOLATION))
    observe_object(state, "ModelPolicy", _obj("team", "5", "a", **ISOLATION))
    observe_object(state, "ModelPolicyException", _obj("waive", "6", "a", **EXCEPTION))
    exec_rule = {"rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]}
    ref = {"roleRef": {"kind": "Role", "name": "r"}, "subjects": [{"kind": "User", "name": "u"}]}
    observe_object(state, "Role", _obj("r", "6", "a", **exec_rule))
    observe_object(state, "ClusterRole", _obj("cr", "7", **exec_rule))
    observe_object(state, "RoleBinding", _obj("rb", "8", "a", **ref))
    observe_object(state, "ClusterRoleBinding", _obj("crb", "9", **ref))
    observe_object(state, "StorageClass", _obj("enc", "10", parameters={"encrypted": "true"}))
    observe_object(state, "PersistentVolumeClaim", _obj("c", "11", "a", spec={}))


async def test_resync_removes_deleted_objects_of_every_kind() -> None:
    state, lister, synced = ClusterState(), FakeLister(), Synced()
    state.ready = True
    _watched(state)
    assert state.namespace("a").has_default_deny is True
    # While the watches were down: the NetworkPolicy, the Service and the cluster policy were
    # deleted, and the namespace lost its label. Only the ModelPolicy remains.
    lister.objects = {
        "Namespace": [_obj("a", "50")],
        "ModelPolicy": [{**_obj("team", "5", "a", **ISOLATION)}],
    }
    assert [e.name for e in state.exceptions] == ["waive"]
    removed = await _resync(state, lister, synced).resync()

    assert removed == {
        "ClusterModelPolicy": 1,
        "ModelPolicy": 0,
        "Namespace": 0,
        "NetworkPolicy": 1,
        "Service": 1,
        "ModelPolicyException": 1,
        "Role": 1,
        "ClusterRole": 1,
        "RoleBinding": 1,
        "ClusterRoleBinding": 1,
        "StorageClass": 1,
        "PersistentVolumeClaim": 1,
    }
    assert state.exceptions == ()
    assert state.namespace("a").has_default_deny is False
    snapshot = state.rbac_snapshot()
    assert not snapshot.roles and not snapshot.bindings
    assert state.storage_class("enc") is None and state.claim("a", "c") is None
    assert state.namespace("a").labels == {}
    assert state.service_selector("a", "llm") is None
    assert [p.ref.name for p in state.active_policies] == ["team"]
    # The deleted policy's status bookkeeping is dropped; the unchanged one is not re-synced.
    assert synced.calls == [(("ClusterModelPolicy", None, "iso"), None)]


async def test_resync_leaves_a_policy_it_already_holds_uncompiled() -> None:
    state, lister, synced = ClusterState(), FakeLister(), Synced()
    _watched(state)
    entry = state.policy(("ClusterModelPolicy", None, "iso"))
    lister.objects = {"ClusterModelPolicy": [_obj("iso", "4", **ISOLATION)]}
    await _resync(state, lister, synced).resync(["ClusterModelPolicy"])
    assert state.policy(("ClusterModelPolicy", None, "iso")) is entry
    assert state.policy(("ModelPolicy", "a", "team")) is not None  # the other kind is kept


async def test_a_kopf_relist_triggers_a_resync_of_that_kind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resync_module, "DEBOUNCE_SECONDS", 0.0)
    state, lister, synced = ClusterState(), FakeLister(), Synced()
    state.ready = True
    _watched(state)
    runner = _resync(state, lister, synced)
    task = asyncio.create_task(runner.run())
    try:
        runner.request("NetworkPolicy")
        runner.request("NetworkPolicy")  # one resync per burst of re-list events
        for _ in range(100):
            await asyncio.sleep(0)
            if lister.calls:
                break
        while state.namespace("a").has_default_deny:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert lister.calls == ["NetworkPolicy"]


async def test_periodic_resync_lists_every_kind_and_retries_after_errors() -> None:
    state, lister, synced = ClusterState(), FakeLister(), Synced()
    failures = {"left": 1}

    def flaky(kind: str) -> tuple[list[dict[str, Any]], str | None]:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("connection refused")
        return FakeLister.list_kind(lister, kind)

    lister.list_kind = flaky  # type: ignore[method-assign]
    runner = StateResync(state=state, lister=lister, sync_policy=synced, interval=0.01)
    task = asyncio.create_task(runner.run())
    try:
        while len(lister.calls) < 5:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert set(lister.calls) == set(resync_module.KINDS)
