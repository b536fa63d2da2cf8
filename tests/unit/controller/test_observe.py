"""Watched objects into state, and the status a policy should carry."""

from __future__ import annotations

from modelward.controller.observe import desired_status, observe_object, status_differs
from modelward.state import ClusterState


def _policy(generation: int, spec: dict[str, object], rv: str) -> dict[str, object]:
    return {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": "ClusterModelPolicy",
        "metadata": {"name": "p", "generation": generation, "resourceVersion": rv},
        "spec": {"match": {"namespaces": ["a"]}, **spec},
    }


def test_broken_update_keeps_the_last_valid_generation() -> None:
    state = ClusterState()
    good = observe_object(state, "ClusterModelPolicy", _policy(1, {"images": {}}, "10"))
    assert good is not None and good.error is None and len(state.active_policies) == 1
    broken = _policy(
        2,
        {"match": {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}},
        "11",
    )
    entry = observe_object(state, "ClusterModelPolicy", broken)
    assert entry is not None and entry.error is not None
    assert len(state.active_policies) == 1  # still enforcing generation 1
    status = desired_status(entry, counts={}, previous=None)
    ready = status["conditions"][0]
    assert ready["status"] == "False" and ready["reason"] == "InvalidPolicy"
    assert "still enforcing the last valid generation 1" in ready["message"]


def test_older_resource_versions_never_win() -> None:
    state = ClusterState()
    observe_object(state, "ClusterModelPolicy", _policy(2, {"images": {}}, "20"))
    assert observe_object(state, "ClusterModelPolicy", _policy(1, {"secrets": {}}, "19")) is None
    assert state.active_policies[0].images is not None


def test_deletion_removes_the_policy() -> None:
    state = ClusterState()
    observe_object(state, "ClusterModelPolicy", _policy(1, {"images": {}}, "1"))
    observe_object(state, "ClusterModelPolicy", _policy(1, {}, "2"), deleted=True)
    assert state.active_policies == ()


def test_namespaces_network_policies_services() -> None:
    state = ClusterState()
    state.ready = True
    observe_object(state, "Namespace", {"metadata": {"name": "a", "labels": {"x": "y"}}})
    netpol = {
        "metadata": {"name": "deny", "namespace": "a"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
    }
    observe_object(state, "NetworkPolicy", netpol)
    observe_object(
        state,
        "Service",
        {"metadata": {"name": "s", "namespace": "a"}, "spec": {"selector": {"app": "m"}}},
    )
    facts = state.namespace("a")
    assert facts.labels == {"x": "y"} and facts.has_default_deny is True
    assert state.service_selector("a", "s") == {"app": "m"}
    observe_object(state, "NetworkPolicy", netpol, deleted=True)
    assert state.namespace("a").has_default_deny is False


def test_allow_all_network_policies_are_remembered_until_narrowed() -> None:
    state = ClusterState()
    state.ready = True
    opener = {
        "metadata": {"name": "open", "namespace": "a"},
        "spec": {"podSelector": {"matchLabels": {"app": "m"}}, "ingress": [{}]},
    }
    observe_object(state, "NetworkPolicy", opener)
    ((name, selector),) = state.namespace("a").open_ingress
    assert name == "open" and selector.matches({"app": "m"}) and not selector.matches({})
    narrowed = {**opener, "spec": {**opener["spec"], "ingress": [{"from": [{"podSelector": {}}]}]}}
    observe_object(state, "NetworkPolicy", narrowed)
    assert state.namespace("a").open_ingress == ()
    observe_object(state, "NetworkPolicy", opener)
    observe_object(state, "NetworkPolicy", opener, deleted=True)
    assert state.namespace("a").open_ingress == ()


def test_status_patch_only_when_something_changed() -> None:
    state = ClusterState()
    entry = observe_object(state, "ClusterModelPolicy", _policy(3, {"images": {}}, "1"))
    assert entry is not None
    first = desired_status(entry, counts={}, previous=None)
    again = desired_status(entry, counts={}, previous=first)
    assert not status_differs(first, again)
    assert (
        again["conditions"][0]["lastTransitionTime"] == first["conditions"][0]["lastTransitionTime"]
    )
    assert status_differs(first, desired_status(entry, counts={"denied": 1}, previous=first))
