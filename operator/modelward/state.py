"""What the controller has learned from its watches, read by the admission server.

One in-memory ``ClusterState`` per process: compiled policies, namespace labels, default-deny
NetworkPolicies and Service selectors. Writes come from kopf watch handlers (and the start-up
listing); reads come from admission requests on the same event loop, so no locks are needed.
It implements the engine's ``ClusterFacts`` protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from modelward.engine import NamespaceFacts, Policy
from modelward.engine.selectors import LabelSelector
from modelward.errors import PolicyError


def _newer(incoming: str | None, current: str | None) -> bool:
    """resourceVersions are opaque, but etcd's are integers: never let an older copy win."""
    if incoming is None or current is None:
        return True
    try:
        return int(incoming) >= int(current)
    except ValueError:
        return True


@dataclass
class PolicyEntry:
    """The last good compiled policy, and the error of the newest generation if it failed."""

    policy: Policy | None
    error: PolicyError | None
    generation: int
    resource_version: str | None


@dataclass
class ClusterState:
    policies: dict[tuple[str, str | None, str], PolicyEntry] = field(default_factory=dict)
    namespaces: dict[str, NamespaceFacts] = field(default_factory=dict)
    default_deny: dict[str, set[str]] = field(default_factory=dict)
    #: namespace -> NetworkPolicy name -> the pods it opens to every ingress source.
    open_ingress: dict[str, dict[str, LabelSelector]] = field(default_factory=dict)
    services: dict[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)
    ready: bool = False
    _versions: dict[tuple[str, ...], str] = field(default_factory=dict)
    _active: tuple[Policy, ...] = ()

    # -- versions ------------------------------------------------------------------------------

    def _accept(self, key: tuple[str, ...], resource_version: str | None) -> bool:
        if not _newer(resource_version, self._versions.get(key)):
            return False
        if resource_version is not None:
            self._versions[key] = resource_version
        return True

    # -- policies ------------------------------------------------------------------------------

    def put_policy(
        self,
        key: tuple[str, str | None, str],
        *,
        policy: Policy | None,
        error: PolicyError | None,
        generation: int,
        resource_version: str | None,
    ) -> PolicyEntry | None:
        """Store a compiled policy, or the error of one that failed (keeping the last good)."""
        if not self._accept(("policy", key[0], key[1] or "", key[2]), resource_version):
            return None
        previous = self.policies.get(key)
        entry = PolicyEntry(
            policy=policy if policy is not None else (previous.policy if previous else None),
            error=error,
            generation=generation,
            resource_version=resource_version,
        )
        self.policies[key] = entry
        self._refresh()
        return entry

    def delete_policy(self, key: tuple[str, str | None, str]) -> None:
        self.policies.pop(key, None)
        self._versions.pop(("policy", key[0], key[1] or "", key[2]), None)
        self._refresh()

    def _refresh(self) -> None:
        self._active = tuple(e.policy for e in self.policies.values() if e.policy is not None)

    @property
    def active_policies(self) -> tuple[Policy, ...]:
        return self._active

    # -- namespaces, network policies, services -------------------------------------------------

    def put_namespace(self, facts: NamespaceFacts, resource_version: str | None = None) -> None:
        if self._accept(("ns", facts.name), resource_version):
            self.namespaces[facts.name] = facts

    def delete_namespace(self, name: str) -> None:
        self.namespaces.pop(name, None)

    def put_network_policy(
        self,
        namespace: str,
        name: str,
        *,
        default_deny: bool,
        opens_ingress_to: LabelSelector | None = None,
    ) -> None:
        names = self.default_deny.setdefault(namespace, set())
        if default_deny:
            names.add(name)
        else:
            names.discard(name)
        opened = self.open_ingress.setdefault(namespace, {})
        if opens_ingress_to is not None:
            opened[name] = opens_ingress_to
        else:
            opened.pop(name, None)

    def put_service(self, namespace: str, name: str, selector: Mapping[str, str] | None) -> None:
        if selector is None:
            self.services.pop((namespace, name), None)
        else:
            self.services[(namespace, name)] = dict(selector)

    # -- ClusterFacts ---------------------------------------------------------------------------

    def namespace(self, name: str) -> NamespaceFacts:
        known = self.namespaces.get(name) or NamespaceFacts(name=name)
        return NamespaceFacts(
            name=name,
            labels=known.labels,
            annotations=known.annotations,
            has_default_deny=bool(self.default_deny.get(name)) if self.ready else None,
            open_ingress=tuple(
                sorted((self.open_ingress.get(name) or {}).items(), key=lambda item: item[0])
            ),
        )

    def service_selector(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.services.get((namespace, name))
