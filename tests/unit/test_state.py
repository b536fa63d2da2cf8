"""ClusterState: versions and tombstones, atomic per-kind replace, readers on other threads."""

from __future__ import annotations

import threading
from typing import Any

from modelward.engine import NamespaceFacts
from modelward.state import NETWORK_POLICIES, POLICIES, SERVICES, ClusterState
from tests.unit.engine.builders import policy


def _state() -> ClusterState:
    state = ClusterState()
    state.ready = True
    return state


def test_replace_removes_what_the_list_no_longer_holds() -> None:
    """The stale-state bug: a default-deny policy deleted while the watch was down."""
    state = _state()
    state.put_network_policy("a", "default-deny", default_deny=True, resource_version="10")
    state.put_service("a", "llm", {"app": "llm"}, "11")
    state.put_service("a", "kept", {"app": "kept"}, "12")
    assert state.namespace("a").has_default_deny is True

    removed = state.replace(NETWORK_POLICIES, {}, list_version="20")
    services = state.replace(SERVICES, {("a", "kept"): ({"app": "kept"}, "12")}, list_version="20")

    assert removed.removed == (("a", "default-deny"),)
    assert state.namespace("a").has_default_deny is False
    assert services.removed == (("a", "llm"),) and services.written == ()
    assert state.service_selector("a", "llm") is None
    assert state.service_selector("a", "kept") == {"app": "kept"}


def test_replace_keeps_what_a_newer_watch_event_wrote() -> None:
    """A list taken before a create must not remove the created object."""
    state = _state()
    state.put_network_policy("a", "created-later", default_deny=True, resource_version="30")
    state.replace(NETWORK_POLICIES, {}, list_version="25")
    assert state.namespace("a").has_default_deny is True


def test_replace_does_not_resurrect_what_a_newer_watch_event_deleted() -> None:
    state = _state()
    state.put_network_policy("a", "p", default_deny=True, resource_version="10")
    state.delete_network_policy("a", "p", "30")
    result = state.replace(NETWORK_POLICIES, {("a", "p"): (True, "10")}, list_version="25")
    assert result.written == () and state.namespace("a").has_default_deny is False


def test_replace_applies_newer_listed_copies_and_skips_equal_ones() -> None:
    state = _state()
    state.put_namespace(NamespaceFacts("a", {"tier": "old"}), "5")
    result = state.replace(
        "namespaces",
        {"a": (NamespaceFacts("a", {"tier": "new"}), "7"), "b": (NamespaceFacts("b"), "8")},
        list_version="9",
    )
    assert sorted(result.written) == ["a", "b"]
    assert state.namespace("a").labels == {"tier": "new"}
    again = state.replace(
        "namespaces",
        {"a": (NamespaceFacts("a", {"tier": "new"}), "7"), "b": (NamespaceFacts("b"), "8")},
        list_version="9",
    )
    assert again.written == () and again.removed == ()


def test_a_stale_copy_never_undoes_a_deletion() -> None:
    state = _state()
    state.put_service("a", "s", {"app": "x"}, "10")
    state.put_service("a", "s", None, "12")  # the watch's DELETED
    state.put_service("a", "s", {"app": "x"}, "10")  # an older copy still in flight
    assert state.service_selector("a", "s") is None
    state.put_service("a", "s", {"app": "y"}, "14")  # re-created: newer, accepted
    assert state.service_selector("a", "s") == {"app": "y"}


def test_tombstones_are_forgotten_after_a_second_list() -> None:
    state = _state()
    for index in range(100):
        state.put_service("a", f"s{index}", {"app": "x"}, str(10 + index))
        state.put_service("a", f"s{index}", None, str(200 + index))
    state.replace(SERVICES, {}, list_version="400")
    state.replace(SERVICES, {}, list_version="500")
    assert state._stores[SERVICES].tombstones == {}


def test_read_views_are_copies_not_the_live_dictionaries() -> None:
    state = _state()
    p = policy({"images": {}}, name="p")
    key = ("ClusterModelPolicy", None, "p")
    state.put_policy(key, policy=p, error=None, generation=1, resource_version="1")
    view = state.policies
    state.delete_policy(key, "2")
    assert key in view and state.policies == {}  # iterating ``view`` cannot break meanwhile


def test_readers_on_other_threads_see_a_replace_whole_or_not_at_all() -> None:
    """The audit reads the state from a worker thread while watch events and resyncs write."""
    state = _state()
    sets = {
        prefix: {
            ("ClusterModelPolicy", None, f"{prefix}{i}"): (
                state.policy_entry_for(
                    ("ClusterModelPolicy", None, f"{prefix}{i}"),
                    policy=policy({"images": {}}, name=f"{prefix}{i}"),
                    error=None,
                    generation=1,
                    resource_version=None,
                ),
                None,
            )
            for i in range(20)
        }
        for prefix in ("p", "q")
    }
    state.replace(POLICIES, sets["p"], list_version=None)
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: set[int] = set()

    def read() -> None:
        try:
            while not stop.is_set():
                names = {p.ref.name[0] for p in state.active_policies}
                seen.add(len(state.active_policies))
                assert len(names) == 1, names  # all p... or all q..., never a mix
                for key, entry in state.policies.items():
                    assert entry.policy is not None and entry.policy.ref.name == key[2]
                state.namespace("a")
        except BaseException as error:
            errors.append(error)
            stop.set()

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    for index in range(300):
        state.replace(POLICIES, sets["pq"[index % 2]], list_version=None)
        state.put_network_policy("a", f"n{index}", default_deny=True)
    stop.set()
    for reader in readers:
        reader.join(timeout=30)
    assert not errors, errors
    assert seen == {20}


def test_the_namespace_view_follows_the_state() -> None:
    """The admission app holds the view from start-up; namespaces created later must count
    (a copy taken at start-up made every Event and count vanish)."""
    state = ClusterState()
    view = state.namespace_names
    assert "serving" not in view
    state.put_namespace(NamespaceFacts(name="serving"), "5")
    assert "serving" in view and 7 not in view
    state.delete_namespace("serving", "6")
    assert "serving" not in view


def _put(state: ClusterState, name: str, **kwargs: Any) -> None:
    kind = kwargs.get("kind", "ClusterModelPolicy")
    state.put_policy(
        (kind, kwargs.get("namespace"), name),
        policy=policy({"images": {}}, name=name, **kwargs),
        error=None,
        generation=1,
        resource_version=None,
    )


def test_policies_for_a_namespace_are_those_that_may_select_a_pod_there() -> None:
    state = ClusterState()
    pod_llm = {"podSelector": {"matchLabels": {"app": "llm"}}}
    _put(state, "by-name", match={"namespaces": ["serving-*"]})
    _put(state, "by-label", match={"namespaceSelector": {"matchLabels": {"tier": "gpu"}}})
    _put(state, "by-pod", match={"namespaces": ["*"], **pod_llm})
    _put(state, "excluded", match={"namespaces": ["*"]}, exclude={"namespaces": ["serving-b"]})
    _put(state, "pod-excluded", kind="ModelPolicy", namespace="serving-b", exclude=pod_llm)

    def names(namespace: NamespaceFacts) -> list[str]:
        return [p.ref.name for p in state.policies_for(namespace)]

    assert names(NamespaceFacts("serving-a")) == ["by-name", "by-pod", "excluded"]
    assert names(NamespaceFacts("serving-b")) == ["by-name", "by-pod", "pod-excluded"]
    assert names(NamespaceFacts("other", {"tier": "gpu"})) == ["by-label", "by-pod", "excluded"]
    # the same name with other labels is another entry, not a stale one
    assert "by-label" not in names(NamespaceFacts("other"))


def test_policies_for_follows_policy_changes() -> None:
    state = ClusterState()
    serving = NamespaceFacts("serving-a")
    assert state.policies_for(serving) == ()
    _put(state, "first")
    assert [p.ref.name for p in state.policies_for(serving)] == ["first"]
    state.delete_policy(("ClusterModelPolicy", None, "first"))
    assert state.policies_for(serving) == ()


def test_every_policy_applying_to_a_pod_is_among_those_for_its_namespace() -> None:
    """The index is a filter that never drops a policy the engine would apply."""
    state = ClusterState()
    pod_llm = {"podSelector": {"matchLabels": {"app": "llm"}}}
    matches: list[dict[str, Any]] = [
        {"namespaces": ["serving-*"]},
        {"namespaceSelector": {"matchLabels": {"tier": "gpu"}}},
        {"namespaceSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}},
        {"namespaces": ["*"], **pod_llm},
    ]
    excludes: list[dict[str, Any] | None] = [
        None,
        {"namespaces": ["serving-b"]},
        {"namespaceSelector": {"matchLabels": {"tier": "gpu"}}},
    ]
    for i, match in enumerate(matches):
        for j, exclude in enumerate(excludes):
            _put(state, f"p{i}-{j}", match=match, exclude=exclude)
    for namespace in ("serving-a", "other"):
        _put(state, f"m-{namespace}", kind="ModelPolicy", namespace=namespace, match=pod_llm)
        _put(state, f"x-{namespace}", kind="ModelPolicy", namespace=namespace, exclude=pod_llm)
    namespaces = [
        NamespaceFacts("serving-a"),
        NamespaceFacts("serving-b", {"tier": "gpu"}),
        NamespaceFacts("other"),
        NamespaceFacts("other", {"tier": "gpu"}),
    ]
    pods: list[dict[str, str]] = [{}, {"app": "llm"}, {"app": "other"}]
    checked = 0
    for namespace in namespaces:
        indexed = set(state.policies_for(namespace))
        for labels in pods:
            applying = {p for p in state.active_policies if p.applies_to(namespace, labels)}
            assert applying <= indexed, (namespace, labels)
            checked += len(applying)
    assert checked > 20  # the fixture really exercises the index


# -- RBAC and storage facts (access and storage rules) ------------------------------------------


def test_rbac_snapshot_is_rebuilt_after_a_change_and_roles_are_compacted() -> None:
    from modelward.controller.observe import observe_object
    from modelward.engine.rbac import Atom, Principal

    state = ClusterState()
    exec_rule = {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}
    noise = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}
    role = {"metadata": {"name": "r", "namespace": "a", "resourceVersion": "1"}}
    observe_object(state, "Role", {**role, "rules": [noise]})
    observe_object(
        state,
        "RoleBinding",
        {
            "metadata": {"name": "b", "namespace": "a", "resourceVersion": "2"},
            "roleRef": {"kind": "Role", "name": "r"},
            "subjects": [{"kind": "User", "name": "u"}],
        },
    )
    before = state.rbac_snapshot()
    assert before.roles[("Role", "a", "r")].rules == ()  # only sensitive rules are kept
    assert state.rbac_snapshot() is before  # shared until something changes
    exec_ = Atom("create", "", "pods", "exec")
    assert not before.principal_can(Principal("u"), "a", exec_)
    observe_object(
        state,
        "Role",
        {**role, "metadata": {**role["metadata"], "resourceVersion": "3"}, "rules": [exec_rule]},
    )
    assert state.rbac_snapshot().principal_can(Principal("u"), "a", exec_)


def test_an_admitted_rbac_object_gives_way_to_its_watch_event() -> None:
    from modelward.controller.observe import observe_object
    from modelward.engine.rbac import parse_role

    state = ClusterState()
    admitted = parse_role(
        {"kind": "Role", "metadata": {"name": "r", "namespace": "a"}, "rules": []}
    )
    state.put_admitted_rbac(admitted)
    assert ("Role", "a", "r") in state.rbac_snapshot().roles
    exec_rule = {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}
    observe_object(
        state,
        "Role",
        {"metadata": {"name": "r", "namespace": "a", "resourceVersion": "7"}, "rules": [exec_rule]},
    )
    assert state.rbac_snapshot().roles[("Role", "a", "r")].rules


def test_claims_and_the_default_storage_class() -> None:
    from modelward.controller.observe import observe_object

    state = ClusterState()
    default = {"storageclass.kubernetes.io/is-default-class": "true"}
    observe_object(
        state,
        "StorageClass",
        {
            "metadata": {"name": "gp3", "annotations": default, "resourceVersion": "1"},
            "parameters": {"encrypted": "true"},
        },
    )
    observe_object(
        state,
        "PersistentVolumeClaim",
        {"metadata": {"name": "m", "namespace": "a", "resourceVersion": "2"}, "spec": {}},
    )
    default_class = state.default_storage_class()
    assert default_class is not None and default_class.parameters == {"encrypted": "true"}
    claim = state.claim("a", "m")
    assert claim is not None and claim.storage_class is None
    observe_object(
        state, "StorageClass", {"metadata": {"name": "gp3", "resourceVersion": "3"}}, deleted=True
    )
    assert state.default_storage_class() is None
