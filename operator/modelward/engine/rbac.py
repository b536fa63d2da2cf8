"""RBAC as the API server's authorizer reads it, reduced to the sensitive permissions.

Who can reach a model is decided by Roles, ClusterRoles and their bindings. This module
answers, from those objects alone and without a network call, which subject may use which
*sensitive* permission (exec into a model pod, read its Secrets, rewrite its volumes or its
workload) in which namespace, and through which binding. It is used by the ``access`` rules at
admission (``engine/rules/access.py``), by ``modelward access-review``, and by the evidence
report; the end-to-end tests hold it to the API server's own SubjectAccessReview answers.

The matching rules are Kubernetes' own (``rbac/v1`` ``VerbMatches``, ``APIGroupMatches``,
``ResourceMatches``, ``ResourceNameMatches``): ``*`` matches any verb, group or resource,
``*/exec`` matches the ``exec`` subresource of anything, ``pods/*`` matches nothing special,
and a rule with ``resourceNames`` applies only to requests for those names (never to list,
watch or create, which carry no name). A RoleBinding grants its role in its own namespace; a
ClusterRoleBinding grants its ClusterRole in every namespace.

Aggregated ClusterRoles (``aggregationRule``) grant their own stored rules plus those of every
ClusterRole their selectors match, recursively: the union the aggregation controller writes
into them. Counting the union at once means a ClusterRole labelled to join ``edit`` is judged
when it is written, not after the controller has already widened ``edit``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelward.engine.selectors import LabelSelector, SelectorError

RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")


@dataclass(frozen=True, order=True)
class Atom:
    """One request shape the authorizer judges: a verb on a resource (and subresource)."""

    verb: str
    group: str
    resource: str
    subresource: str = ""

    @property
    def combined(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource

    def __str__(self) -> str:
        group = f"{self.group}/" if self.group else ""
        return f"{self.verb} {group}{self.combined}"


def _atoms(verbs: Iterable[str], group: str, *resources: str) -> tuple[Atom, ...]:
    out: list[Atom] = []
    for combined in resources:
        resource, _, sub = combined.partition("/")
        out.extend(Atom(verb, group, resource, sub) for verb in verbs)
    return tuple(out)


WRITES = ("create", "update", "patch", "delete", "deletecollection")
#: The sensitive permissions, by the name policies and reports use, and the requests that use
#: them. Streaming subresources count with ``get`` too: a WebSocket upgrade is a GET, which
#: older API servers (and newer ones with the feature gate off) authorise as ``get``.
SENSITIVE: dict[str, tuple[Atom, ...]] = {
    "pods/exec": _atoms(("create", "get"), "", "pods/exec"),
    "pods/attach": _atoms(("create", "get"), "", "pods/attach"),
    "pods/portforward": _atoms(("create", "get"), "", "pods/portforward"),
    "pods/ephemeralcontainers": _atoms(("update", "patch"), "", "pods/ephemeralcontainers"),
    "secrets": _atoms(("get", "list", "watch"), "", "secrets"),
    "persistentvolumeclaims": _atoms(WRITES, "", "persistentvolumeclaims"),
    "workloads": (
        *_atoms(WRITES, "", "pods", "replicationcontrollers"),
        *_atoms(WRITES, "apps", "deployments", "statefulsets", "daemonsets", "replicasets"),
        *_atoms(WRITES, "batch", "jobs", "cronjobs"),
    ),
}
PERMISSIONS = tuple(SENSITIVE)
ALL_ATOMS: tuple[Atom, ...] = tuple(a for atoms in SENSITIVE.values() for a in atoms)
PERMISSION_OF: dict[Atom, str] = {a: p for p, atoms in SENSITIVE.items() for a in atoms}


@dataclass(frozen=True)
class Rule:
    """A PolicyRule (resource rules only: non-resource URLs grant nothing here)."""

    verbs: frozenset[str]
    groups: frozenset[str]
    resources: frozenset[str]
    names: frozenset[str] = frozenset()

    def allows(self, atom: Atom, name: str | None = None) -> bool:
        if "*" not in self.verbs and atom.verb not in self.verbs:
            return False
        if "*" not in self.groups and atom.group not in self.groups:
            return False
        if not self._resource_matches(atom):
            return False
        return not self.names or (name is not None and name in self.names)

    def _resource_matches(self, atom: Atom) -> bool:
        for resource in self.resources:
            if resource == "*" or resource == atom.combined:
                return True
            if atom.subresource and resource == f"*/{atom.subresource}":
                return True
        return False

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Rule:
        def strings(key: str) -> frozenset[str]:
            value = raw.get(key)
            return frozenset(str(v) for v in value) if isinstance(value, list) else frozenset()

        return cls(
            verbs=strings("verbs"),
            groups=strings("apiGroups"),
            resources=strings("resources"),
            names=strings("resourceNames"),
        )


def _touches_sensitive(rule: Rule) -> bool:
    """Whether a rule could allow any sensitive request (for some name)."""
    unnamed = Rule(rule.verbs, rule.groups, rule.resources)
    return any(unnamed.allows(atom) for atom in ALL_ATOMS)


@dataclass(frozen=True)
class RoleFacts:
    """A Role or ClusterRole, compacted to what the access rules need: the rules that touch a
    sensitive permission, and (ClusterRoles) the labels and aggregation selectors."""

    kind: str
    namespace: str  # "" for a ClusterRole
    name: str
    rules: tuple[Rule, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    #: None: not aggregated; otherwise the clusterRoleSelectors (ANDed per item, ORed across).
    aggregation: tuple[LabelSelector, ...] | None = None

    @property
    def key(self) -> RoleKey:
        return (self.kind, self.namespace, self.name)

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


RoleKey = tuple[str, str, str]  # (kind, namespace or "", name)


@dataclass(frozen=True, order=True)
class RbacSubject:
    """A binding subject. A User named ``system:serviceaccount:<ns>:<name>`` is normalised to
    the ServiceAccount it is, so either spelling is judged the same way."""

    kind: str  # User, Group, ServiceAccount
    name: str
    namespace: str = ""

    def __str__(self) -> str:
        if self.kind == "ServiceAccount":
            return f"ServiceAccount {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"

    @property
    def username(self) -> str | None:
        if self.kind == "User":
            return self.name
        if self.kind == "ServiceAccount":
            return f"system:serviceaccount:{self.namespace}:{self.name}"
        return None


SA_PREFIX = "system:serviceaccount:"


def parse_subject(raw: Mapping[str, Any], default_namespace: str) -> RbacSubject | None:
    kind = str(raw.get("kind") or "")
    name = str(raw.get("name") or "")
    if not name or kind not in ("User", "Group", "ServiceAccount"):
        return None
    if kind == "ServiceAccount":
        return RbacSubject(kind, name, str(raw.get("namespace") or default_namespace))
    if kind == "User" and name.startswith(SA_PREFIX) and name.count(":") == 3:
        namespace, sa = name[len(SA_PREFIX) :].split(":", 1)
        return RbacSubject("ServiceAccount", sa, namespace)
    return RbacSubject(kind, name)


@dataclass(frozen=True)
class BindingFacts:
    """A RoleBinding or ClusterRoleBinding: its role reference and its subjects."""

    kind: str
    namespace: str  # "" for a ClusterRoleBinding
    name: str
    role_kind: str
    role_name: str
    subjects: tuple[RbacSubject, ...]

    @property
    def key(self) -> RoleKey:
        return (self.kind, self.namespace, self.name)

    def role_key(self) -> RoleKey:
        """The role granted: a RoleBinding's Role is in its own namespace."""
        return (self.role_kind, self.namespace if self.role_kind == "Role" else "", self.role_name)

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


class RbacParseError(ValueError):
    """An RBAC object modelward cannot read (the API server would have refused it)."""


def parse_role(obj: Mapping[str, Any]) -> RoleFacts:
    """A Role or ClusterRole object, compacted (rules that touch nothing sensitive dropped)."""
    kind = str(obj.get("kind") or "")
    meta = obj.get("metadata") or {}
    raw_rules = obj.get("rules") or []
    rules = tuple(
        r
        for r in (Rule.parse(x) for x in raw_rules if isinstance(x, Mapping))
        if _touches_sensitive(r)
    )
    aggregation = None
    raw_aggregation = obj.get("aggregationRule")
    if kind == "ClusterRole" and isinstance(raw_aggregation, Mapping):
        try:
            aggregation = tuple(
                LabelSelector.parse(s)
                for s in raw_aggregation.get("clusterRoleSelectors") or []
                if isinstance(s, Mapping)
            )
        except SelectorError as exc:
            raise RbacParseError(f"{kind} {meta.get('name')}: {exc}") from exc
    return RoleFacts(
        kind=kind,
        namespace=str(meta.get("namespace") or "") if kind == "Role" else "",
        name=str(meta.get("name") or ""),
        rules=rules,
        labels=dict(meta.get("labels") or {}) if kind == "ClusterRole" else {},
        aggregation=aggregation,
    )


def parse_binding(obj: Mapping[str, Any]) -> BindingFacts:
    kind = str(obj.get("kind") or "")
    meta = obj.get("metadata") or {}
    namespace = str(meta.get("namespace") or "") if kind == "RoleBinding" else ""
    ref = obj.get("roleRef") or {}
    subjects = tuple(
        s
        for s in (
            parse_subject(raw, namespace)
            for raw in obj.get("subjects") or []
            if isinstance(raw, Mapping)
        )
        if s is not None
    )
    return BindingFacts(
        kind=kind,
        namespace=namespace,
        name=str(meta.get("name") or ""),
        role_kind=str(ref.get("kind") or ""),
        role_name=str(ref.get("name") or ""),
        subjects=subjects,
    )


@dataclass(frozen=True)
class Grant:
    """A sensitive request a role allows, for every name (``names`` empty) or only those."""

    atom: Atom
    names: frozenset[str] = frozenset()


class RbacSnapshot:
    """Roles and bindings at one moment; answers what a role grants and who holds it."""

    def __init__(self, roles: Iterable[RoleFacts], bindings: Iterable[BindingFacts]) -> None:
        self.roles: dict[RoleKey, RoleFacts] = {r.key: r for r in roles}
        self.bindings: tuple[BindingFacts, ...] = tuple(bindings)
        self._grants: dict[RoleKey, frozenset[Grant]] = {}

    @classmethod
    def from_objects(cls, objects: Iterable[Mapping[str, Any]]) -> RbacSnapshot:
        """From RBAC manifests or a list response's items (other kinds are ignored)."""
        roles, bindings = [], []
        for obj in objects:
            kind = obj.get("kind")
            if kind in ("Role", "ClusterRole"):
                roles.append(parse_role(obj))
            elif kind in ("RoleBinding", "ClusterRoleBinding"):
                bindings.append(parse_binding(obj))
        return cls(roles, bindings)

    def with_role(self, role: RoleFacts | None, *, key: RoleKey) -> RbacSnapshot:
        """This snapshot with one role replaced (None: removed): what a role write would do."""
        roles = {k: v for k, v in self.roles.items() if k != key}
        if role is not None:
            roles[key] = role
        return RbacSnapshot(roles.values(), self.bindings)

    def with_binding(self, binding: BindingFacts) -> RbacSnapshot:
        bindings = [b for b in self.bindings if b.key != binding.key]
        return RbacSnapshot(self.roles.values(), [*bindings, binding])

    def rules_of(self, key: RoleKey) -> tuple[Rule, ...]:
        """A role's rules, an aggregated ClusterRole's with its sources' (recursively)."""
        role = self.roles.get(key)
        if role is None:
            return ()
        rules: list[Rule] = []
        seen: set[RoleKey] = set()
        pending = [role]
        while pending:
            current = pending.pop()
            if current.key in seen:
                continue
            seen.add(current.key)
            rules.extend(current.rules)
            if current.aggregation:
                pending.extend(self.aggregated_sources(current))
        return tuple(dict.fromkeys(rules))

    def aggregated_sources(self, role: RoleFacts) -> list[RoleFacts]:
        """The ClusterRoles an aggregated ClusterRole's selectors match."""
        selectors = role.aggregation or ()
        return [
            other
            for other in self.roles.values()
            if other.kind == "ClusterRole"
            and other.key != role.key
            and any(s.matches(other.labels) for s in selectors)
        ]

    def aggregating(self, key: RoleKey) -> set[RoleKey]:
        """``key`` and every aggregated ClusterRole that (transitively) includes it."""
        found = {key}
        changed = True
        while changed:
            changed = False
            for role in self.roles.values():
                if role.aggregation is None or role.key in found:
                    continue
                if any(s.key in found for s in self.aggregated_sources(role)):
                    found.add(role.key)
                    changed = True
        return found

    def grants(self, key: RoleKey) -> frozenset[Grant]:
        """The sensitive requests a role allows."""
        cached = self._grants.get(key)
        if cached is not None:
            return cached
        rules = self.rules_of(key)
        out: set[Grant] = set()
        for atom in ALL_ATOMS:
            names: set[str] = set()
            for rule in rules:
                if not rule.names and rule.allows(atom):
                    out.add(Grant(atom))
                    names.clear()
                    break
                if rule.names and Rule(rule.verbs, rule.groups, rule.resources).allows(atom):
                    names.update(rule.names)
            if names:
                out.add(Grant(atom, frozenset(names)))
        result = frozenset(out)
        self._grants[key] = result
        return result

    def bindings_in(self, namespace: str) -> Iterator[BindingFacts]:
        """The bindings that grant something in ``namespace``: its RoleBindings and every
        ClusterRoleBinding."""
        for binding in self.bindings:
            if binding.kind == "ClusterRoleBinding" or binding.namespace == namespace:
                yield binding

    def principal_can(
        self, principal: Principal, namespace: str, atom: Atom, name: str | None = None
    ) -> bool:
        """Whether RBAC allows ``principal`` the request (the authorizer's answer, from the
        objects alone; ``system:masters`` is allowed everything, as the API server does)."""
        if "system:masters" in principal.groups:
            return True
        for binding in self.bindings_in(namespace):
            if not any(principal.is_subject(s) for s in binding.subjects):
                continue
            for rule in self.rules_of(binding.role_key()):
                if rule.allows(atom, name):
                    return True
        return False


@dataclass(frozen=True)
class Principal:
    """An authenticated identity: a user name and its groups (as SubjectAccessReview takes)."""

    user: str
    groups: frozenset[str] = frozenset()

    @classmethod
    def service_account(cls, namespace: str, name: str) -> Principal:
        return cls(
            f"{SA_PREFIX}{namespace}:{name}",
            frozenset(
                {
                    "system:serviceaccounts",
                    f"system:serviceaccounts:{namespace}",
                    "system:authenticated",
                }
            ),
        )

    def is_subject(self, subject: RbacSubject) -> bool:
        if subject.kind == "Group":
            return subject.name in self.groups
        return subject.username == self.user


#: Identities of the control plane itself: bound to sensitive roles by Kubernetes' bootstrap
#: policy, listed by the access review but never reported as violations (restricting them
#: would break the cluster, and only a cluster administrator can bind them anything).
BUILT_IN_GROUPS = frozenset({"system:masters", "system:nodes"})
BUILT_IN_USERS = frozenset(
    {"system:kube-controller-manager", "system:kube-scheduler", "system:apiserver"}
)
BUILT_IN_SA_NAMESPACES = frozenset({"kube-system"})


def is_built_in(subject: RbacSubject) -> bool:
    if subject.kind == "Group":
        return subject.name in BUILT_IN_GROUPS
    if subject.kind == "User":
        return subject.name in BUILT_IN_USERS
    return subject.namespace in BUILT_IN_SA_NAMESPACES
