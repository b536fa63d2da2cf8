"""What the controller has learned from its watches, read by the admission server and the audit.

One in-memory ``ClusterState`` per process: compiled policies, namespace labels, default-deny
NetworkPolicies and Service selectors. It implements the engine's ``ClusterFacts`` protocol.

Two sources write it, both on the operator's event loop:

- watch events (kopf), one object at a time (``put_*`` / ``delete_*``);
- resyncs (``controller/resync.py``), which list a whole kind and ``replace`` what the state
  holds for it. A watch that breaks and re-lists never reports what was deleted while it was
  down; a replace removes it. Without one, a deleted default-deny NetworkPolicy would keep
  MW-ISO-014 passing until the process restarts.

Readers are on more than one thread: admission requests on the loop, the background audit in a
worker thread. So every read and write takes one lock, held only for a few dictionary
operations (a replace holds it for one pass over the kind), and every value handed out is
immutable (frozen ``NamespaceFacts``, ``Policy``, ``PolicyEntry``, tuples) or a copy: a reader
never sees a half-applied change and never iterates a dictionary that another thread changes.
A lock rather than copy-on-write snapshots, because a watch event would then copy a whole kind
(10,000 Services) to change one entry.

Ordering: watch events and lists can arrive out of order (a resync's list can be older than the
last watch event). Every entry remembers the resourceVersion it came from, deletions included
(a "tombstone"), and nothing older replaces anything newer. resourceVersions are opaque to
clients in general, but etcd's are one integer sequence across kinds, which is what makes a
list's version comparable with an object's.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from modelward.engine import NamespaceFacts, Policy, PolicyException
from modelward.engine.facts import ClaimFacts, StorageClassFacts, pick_default
from modelward.engine.image_trust import VulnerabilityReport
from modelward.engine.rbac import BindingFacts, RbacSnapshot, RoleFacts
from modelward.engine.selectors import LabelSelector
from modelward.errors import PolicyError

PolicyKey = tuple[str, str | None, str]

#: The kinds of fact the state holds; a resync replaces one of them as a whole.
POLICIES = "policies"
NAMESPACES = "namespaces"
NETWORK_POLICIES = "networkpolicies"
SERVICES = "services"
EXCEPTIONS = "exceptions"
#: RBAC, compacted to the rules that touch a sensitive permission (access rules, review).
ROLES = "roles"
CLUSTER_ROLES = "clusterroles"
ROLE_BINDINGS = "rolebindings"
CLUSTER_ROLE_BINDINGS = "clusterrolebindings"
RBAC_FACT_KINDS = (ROLES, CLUSTER_ROLES, ROLE_BINDINGS, CLUSTER_ROLE_BINDINGS)
#: RBAC object kind -> its fact kind.
RBAC_FACT_KIND = {
    "Role": ROLES,
    "ClusterRole": CLUSTER_ROLES,
    "RoleBinding": ROLE_BINDINGS,
    "ClusterRoleBinding": CLUSTER_ROLE_BINDINGS,
}
#: StorageClass parameters and default flag; each claim's storageClassName (storage rules).
STORAGE_CLASSES = "storageclasses"
CLAIMS = "persistentvolumeclaims"
#: Trivy Operator VulnerabilityReports, kept compactly: (digest, parsed findings) per report.
VULNERABILITY_REPORTS = "vulnerabilityreports"
FACT_KINDS = (
    POLICIES,
    NAMESPACES,
    NETWORK_POLICIES,
    SERVICES,
    EXCEPTIONS,
    *RBAC_FACT_KINDS,
    STORAGE_CLASSES,
    CLAIMS,
    VULNERABILITY_REPORTS,
)


def _version(value: str | None) -> int | None:
    """etcd's resourceVersion as an integer; None when absent or not a number (then any wins)."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _newer(incoming: int | None, current: int | None) -> bool:
    """Never let an older copy win; equal versions are the same object (accepted, harmless)."""
    if incoming is None or current is None:
        return True
    return incoming >= current


@dataclass(frozen=True)
class PolicyEntry:
    """The last good compiled policy, and the error of the newest generation if it failed."""

    policy: Policy | None
    error: PolicyError | None
    generation: int
    resource_version: str | None


@dataclass(frozen=True)
class ExceptionEntry:
    """A ModelPolicyException as compiled, or why it could not be (it then waives nothing)."""

    exception: PolicyException | None
    error: str | None = None
    generation: int = 0
    #: The status the object carries now (what modelward last wrote), to write only changes
    #: and to post the expiry Event once, whichever replica leads.
    status: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class NetworkPolicyFacts:
    """What one NetworkPolicy means for MW-ISO-014."""

    default_deny: bool
    #: The pods it opens to every ingress source; None when it opens nothing to everyone.
    opens_ingress_to: LabelSelector | None = None


@dataclass(frozen=True)
class ReplaceResult:
    """What a ``replace`` changed: keys written (new or newer) and keys removed."""

    written: tuple[Hashable, ...]
    removed: tuple[Hashable, ...]


class _Store:
    """One kind's entries, their versions, and the versions of recent deletions."""

    def __init__(self) -> None:
        self.items: dict[Any, Any] = {}
        self.versions: dict[Any, int | None] = {}
        #: key -> resourceVersion of its deletion, so that an older copy cannot resurrect it.
        self.tombstones: dict[Any, int | None] = {}
        #: The list version of the previous replace (tombstones older than it are pruned).
        self.listed: int | None = None

    def accepts(self, key: Hashable, version: int | None) -> bool:
        current = self.versions[key] if key in self.items else self.tombstones.get(key)
        return _newer(version, current)

    def put(self, key: Hashable, value: Any, version: int | None) -> None:
        self.items[key] = value
        self.versions[key] = version
        self.tombstones.pop(key, None)

    def remove(self, key: Hashable, version: int | None) -> bool:
        existed = key in self.items
        self.items.pop(key, None)
        self.versions.pop(key, None)
        self.tombstones[key] = version
        return existed


#: Namespaces whose selecting policies are remembered at once (see ``policies_for``).
MAX_NAMESPACE_INDEX = 20_000


class ClusterState:
    """The cluster facts admission needs; safe to read from any thread (see the module doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stores = {kind: _Store() for kind in FACT_KINDS}
        #: Derived from the stores under the same lock, so readers never compute them.
        self._active: tuple[Policy, ...] = ()
        #: (the active policies it was computed from, namespace -> the policies that may
        #: apply to some pod there); replaced whole when the policies change.
        self._by_namespace: tuple[tuple[Policy, ...], dict[Hashable, tuple[Policy, ...]]] = (
            (),
            {},
        )
        self._exceptions: tuple[PolicyException, ...] = ()
        self._default_deny: dict[str, frozenset[str]] = {}
        self._open_ingress: dict[str, tuple[tuple[str, LabelSelector], ...]] = {}
        self._rbac: RbacSnapshot | None = None
        self._default_class: StorageClassFacts | None = None
        self._reports_by_digest: dict[str, tuple[VulnerabilityReport, ...]] = {}
        #: True once every kind was listed in full; before, "no default-deny" is unknown.
        self.ready = False

    # -- generic writes (under the lock) --------------------------------------------------------

    def _put(self, kind: str, key: Hashable, value: Any, resource_version: str | None) -> bool:
        version = _version(resource_version)
        with self._lock:
            store = self._stores[kind]
            if not store.accepts(key, version):
                return False
            store.put(key, value, version)
            self._derive(kind)
            return True

    def _delete(self, kind: str, key: Hashable, resource_version: str | None) -> bool:
        version = _version(resource_version)
        with self._lock:
            store = self._stores[kind]
            if not store.accepts(key, version):
                return False
            store.remove(key, version)
            self._derive(kind)
            return True

    def accepts(self, kind: str, key: Hashable, resource_version: str | None) -> bool:
        """Whether an object at this version would change the state (so is worth compiling)."""
        version = _version(resource_version)
        with self._lock:
            store = self._stores[kind]
            if key in store.items and version is not None:
                return version != store.versions[key] and store.accepts(key, version)
            return store.accepts(key, version)

    def replace(
        self,
        kind: str,
        listed: Mapping[Hashable, tuple[Any, str | None]],
        *,
        list_version: str | None,
    ) -> ReplaceResult:
        """Make the state's ``kind`` what a full list at ``list_version`` says, atomically.

        ``listed`` maps each key to (value, the object's resourceVersion). An entry written by
        a watch event newer than the list is kept; a key the list lacks is removed unless it was
        written after the list was taken (it was created since). Readers see the old or the new
        content of the kind, never a mix.
        """
        at = _version(list_version)
        written: list[Hashable] = []
        removed: list[Hashable] = []
        with self._lock:
            store = self._stores[kind]
            for key, (value, resource_version) in listed.items():
                version = _version(resource_version)
                if key in store.items and version is not None and version == store.versions[key]:
                    continue
                if store.accepts(key, version):
                    store.put(key, value, version)
                    written.append(key)
            for key in [k for k in store.items if k not in listed]:
                version = store.versions[key]
                if at is None or version is None or version <= at:
                    store.remove(key, at)
                    removed.append(key)
            if store.listed is not None:
                # Deletions older than the previous list can no longer be undone by a stale
                # copy in flight: forget them, so tombstones stay bounded.
                for key, version in list(store.tombstones.items()):
                    if version is None or version <= store.listed:
                        del store.tombstones[key]
            store.listed = at
            self._derive(kind)
        return ReplaceResult(written=tuple(written), removed=tuple(removed))

    def _derive(self, kind: str) -> None:
        """Recompute what readers get for ``kind`` (called with the lock held)."""
        items = self._stores[kind].items
        if kind in RBAC_FACT_KINDS:
            self._rbac = None  # rebuilt on the next read
        elif kind == STORAGE_CLASSES:
            self._default_class = pick_default(items.values())
        elif kind == VULNERABILITY_REPORTS:
            by_digest: dict[str, list[VulnerabilityReport]] = {}
            for entry in items.values():
                if entry is not None:
                    by_digest.setdefault(entry[0], []).append(entry[1])
            self._reports_by_digest = {d: tuple(r) for d, r in by_digest.items()}
        elif kind == POLICIES:
            self._active = tuple(e.policy for e in items.values() if e.policy is not None)
        elif kind == EXCEPTIONS:
            self._exceptions = tuple(e.exception for e in items.values() if e.exception is not None)
        elif kind == NETWORK_POLICIES:
            deny: dict[str, set[str]] = {}
            opened: dict[str, list[tuple[str, LabelSelector]]] = {}
            for (namespace, name), facts in items.items():
                if facts.default_deny:
                    deny.setdefault(namespace, set()).add(name)
                if facts.opens_ingress_to is not None:
                    opened.setdefault(namespace, []).append((name, facts.opens_ingress_to))
            self._default_deny = {ns: frozenset(names) for ns, names in deny.items()}
            self._open_ingress = {
                ns: tuple(sorted(pairs, key=lambda pair: pair[0])) for ns, pairs in opened.items()
            }

    # -- policies ------------------------------------------------------------------------------

    def policy_entry_for(
        self,
        key: PolicyKey,
        *,
        policy: Policy | None,
        error: PolicyError | None,
        generation: int,
        resource_version: str | None,
    ) -> PolicyEntry:
        """The entry to store: a failed generation keeps the last good compiled policy."""
        previous = self.policy(key)
        return PolicyEntry(
            policy=policy if policy is not None else (previous.policy if previous else None),
            error=error,
            generation=generation,
            resource_version=resource_version,
        )

    def put_policy(
        self,
        key: PolicyKey,
        *,
        policy: Policy | None,
        error: PolicyError | None,
        generation: int,
        resource_version: str | None,
    ) -> PolicyEntry | None:
        """Store a compiled policy, or the error of one that failed (keeping the last good).

        Returns the stored entry, or None when an equal or newer version is already held.
        """
        entry = self.policy_entry_for(
            key,
            policy=policy,
            error=error,
            generation=generation,
            resource_version=resource_version,
        )
        return entry if self._put(POLICIES, key, entry, resource_version) else None

    def delete_policy(self, key: PolicyKey, resource_version: str | None = None) -> None:
        self._delete(POLICIES, key, resource_version)

    def policy(self, key: PolicyKey) -> PolicyEntry | None:
        with self._lock:
            entry: PolicyEntry | None = self._stores[POLICIES].items.get(key)
            return entry

    @property
    def policies(self) -> dict[PolicyKey, PolicyEntry]:
        """A copy of every policy entry (safe to iterate while the state changes)."""
        with self._lock:
            return dict(self._stores[POLICIES].items)

    @property
    def active_policies(self) -> tuple[Policy, ...]:
        return self._active  # replaced, never mutated: one atomic read

    def policies_for(self, namespace: NamespaceFacts) -> tuple[Policy, ...]:
        """The active policies that may apply to some pod in ``namespace`` (its name and
        labels decide), in policy order: a review's cost follows the policies selecting its
        namespace, not every policy of the cluster.

        Remembered per (name, labels) until the policies change; bounded to
        ``MAX_NAMESPACE_INDEX`` entries (then started afresh). Lock-free for readers: the
        index and the policies it was built from are replaced together.
        """
        active = self._active
        built_from, index = self._by_namespace
        if built_from is not active:
            index = {}
            self._by_namespace = (active, index)
        key = (namespace.name, frozenset(namespace.labels.items()))
        found = index.get(key)
        if found is None:
            found = tuple(p for p in active if p.governs_namespace(namespace))
            if len(index) >= MAX_NAMESPACE_INDEX:
                index.clear()
            index[key] = found
        return found

    # -- namespaces, network policies, services -------------------------------------------------

    def put_namespace(self, facts: NamespaceFacts, resource_version: str | None = None) -> None:
        self._put(NAMESPACES, facts.name, facts, resource_version)

    def delete_namespace(self, name: str, resource_version: str | None = None) -> None:
        self._delete(NAMESPACES, name, resource_version)

    @property
    def namespace_names(self) -> _NamespaceNames:
        """A live, thread-safe view answering ``name in view`` for the namespaces known now
        (no copy per question, unlike ``namespaces``)."""
        return _NamespaceNames(self)

    def knows_namespace(self, name: str) -> bool:
        with self._lock:
            return name in self._stores[NAMESPACES].items

    @property
    def namespaces(self) -> dict[str, NamespaceFacts]:
        """A copy of the known namespaces' facts."""
        with self._lock:
            return dict(self._stores[NAMESPACES].items)

    def put_network_policy(
        self,
        namespace: str,
        name: str,
        *,
        default_deny: bool,
        opens_ingress_to: LabelSelector | None = None,
        resource_version: str | None = None,
    ) -> None:
        """Store what one NetworkPolicy means for MW-ISO-014: whether it is a default-deny, and
        which pods it opens to every ingress source (None: it opens nothing to everyone)."""
        self._put(
            NETWORK_POLICIES,
            (namespace, name),
            NetworkPolicyFacts(default_deny=default_deny, opens_ingress_to=opens_ingress_to),
            resource_version,
        )

    def delete_network_policy(
        self, namespace: str, name: str, resource_version: str | None = None
    ) -> None:
        self._delete(NETWORK_POLICIES, (namespace, name), resource_version)

    def put_service(
        self,
        namespace: str,
        name: str,
        selector: Mapping[str, str] | None,
        resource_version: str | None = None,
    ) -> None:
        """Store a Service's selector; None deletes it (the watch's DELETED event)."""
        if selector is None:
            self._delete(SERVICES, (namespace, name), resource_version)
        else:
            self._put(SERVICES, (namespace, name), dict(selector), resource_version)

    # -- policy exceptions --------------------------------------------------------------------

    def put_exception(
        self, namespace: str, name: str, entry: ExceptionEntry, resource_version: str | None
    ) -> bool:
        return self._put(EXCEPTIONS, (namespace, name), entry, resource_version)

    def delete_exception(
        self, namespace: str, name: str, resource_version: str | None = None
    ) -> None:
        self._delete(EXCEPTIONS, (namespace, name), resource_version)

    @property
    def exceptions(self) -> tuple[PolicyException, ...]:
        """Every compiled exception, expired ones included (the engine judges expiry)."""
        return self._exceptions  # replaced, never mutated: one atomic read

    @property
    def exception_entries(self) -> dict[tuple[str, str], ExceptionEntry]:
        with self._lock:
            return dict(self._stores[EXCEPTIONS].items)

    # -- RBAC and storage ------------------------------------------------------------------------

    def put_fact(self, kind: str, key: Hashable, value: Any, resource_version: str | None) -> None:
        """Store one RBAC, StorageClass or claim fact (``controller.observe.fact`` makes it)."""
        self._put(kind, key, value, resource_version)

    def delete_fact(self, kind: str, key: Hashable, resource_version: str | None) -> None:
        self._delete(kind, key, resource_version)

    def put_admitted_rbac(self, fact: RoleFacts | BindingFacts) -> None:
        """An RBAC object admission just allowed, before its watch event arrives (version
        unknown, so the event replaces it; if the write failed after all, the next resync
        removes it). Without this, a binding written right after a role change, or a role
        right after a binding, could be judged against a cache that lacks the other."""
        self._put(RBAC_FACT_KIND[fact.kind], fact.key, fact, None)

    def rbac_snapshot(self) -> RbacSnapshot:
        """The Roles and bindings known now, as one immutable snapshot (rebuilt after a change,
        shared by the readers until the next one)."""
        with self._lock:
            if self._rbac is None:
                roles: list[RoleFacts] = [
                    *self._stores[ROLES].items.values(),
                    *self._stores[CLUSTER_ROLES].items.values(),
                ]
                bindings: list[BindingFacts] = [
                    *self._stores[ROLE_BINDINGS].items.values(),
                    *self._stores[CLUSTER_ROLE_BINDINGS].items.values(),
                ]
                self._rbac = RbacSnapshot(roles, bindings)
            return self._rbac

    def storage_class(self, name: str) -> StorageClassFacts | None:
        with self._lock:
            found: StorageClassFacts | None = self._stores[STORAGE_CLASSES].items.get(name)
            return found

    def default_storage_class(self) -> StorageClassFacts | None:
        return self._default_class  # replaced, never mutated

    def claim(self, namespace: str, name: str) -> ClaimFacts | None:
        with self._lock:
            found: ClaimFacts | None = self._stores[CLAIMS].items.get((namespace, name))
            return found

    # -- vulnerability reports ------------------------------------------------------------------

    def put_vulnerability_report(
        self,
        namespace: str,
        name: str,
        entry: tuple[str, VulnerabilityReport] | None,
        resource_version: str | None = None,
    ) -> None:
        """Store a report as (image digest, findings); None deletes it."""
        if entry is None:
            self._delete(VULNERABILITY_REPORTS, (namespace, name), resource_version)
        else:
            self._put(VULNERABILITY_REPORTS, (namespace, name), entry, resource_version)

    def vulnerability_reports(self, digest: str) -> tuple[VulnerabilityReport, ...]:
        """The Trivy Operator's reports about the image ``digest``, in any namespace.

        Any namespace: the same image scanned for another workload says the same about it,
        and only the Trivy Operator (not a tenant with ``edit``) can write these objects.
        """
        with self._lock:
            return self._reports_by_digest.get(digest, ())

    # -- ClusterFacts ---------------------------------------------------------------------------

    def namespace(self, name: str) -> NamespaceFacts:
        with self._lock:
            known: NamespaceFacts | None = self._stores[NAMESPACES].items.get(name)
            deny = bool(self._default_deny.get(name))
            opened = self._open_ingress.get(name, ())
        known = known or NamespaceFacts(name=name)
        return NamespaceFacts(
            name=name,
            labels=known.labels,
            annotations=known.annotations,
            has_default_deny=deny if self.ready else None,
            open_ingress=opened,
        )

    def service_selector(self, namespace: str, name: str) -> Mapping[str, str] | None:
        with self._lock:
            selector: Mapping[str, str] | None = self._stores[SERVICES].items.get((namespace, name))
            return selector


class _NamespaceNames:
    """``name in state.namespace_names``: whether the cluster has that namespace right now."""

    def __init__(self, state: ClusterState) -> None:
        self._state = state

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._state.knows_namespace(name)
