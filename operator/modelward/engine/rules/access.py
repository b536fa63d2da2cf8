"""Access by job function (MW-ACC-*): who may reach model pods, their Secrets and volumes.

In the namespaces a policy selects, a sensitive permission (``engine/rbac.py`` ``SENSITIVE``)
may be held only by the subjects of a job function that lists it. Two writes can break that:

- MW-ACC-001: a RoleBinding or ClusterRoleBinding that gives such a permission to a subject no
  job function allows (a ClusterRoleBinding in every selected namespace);
- MW-ACC-002: a Role or ClusterRole change that gives it to a subject already bound to that
  role, directly or because the ClusterRole is aggregated into one that is bound (``edit``,
  ``admin``...). Without this rule, binding an innocent role and then widening it would be a
  way around MW-ACC-001.

Both are judged on what the write adds: a violation that existed before is left to the access
review (``holdings``, ``access_review``), which lists every holder and marks the violations.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from modelward.engine.decision import Decision, Finding, PolicyRef, Violation
from modelward.engine.facts import NamespaceFacts
from modelward.engine.policy import Policy
from modelward.engine.rbac import (
    PERMISSION_OF,
    PERMISSIONS,
    SENSITIVE,
    Atom,
    BindingFacts,
    RbacSnapshot,
    RbacSubject,
    RoleKey,
    is_built_in,
    parse_binding,
    parse_role,
)

BINDING_KINDS = ("RoleBinding", "ClusterRoleBinding")
ROLE_KINDS = ("Role", "ClusterRole")


@dataclass(frozen=True, order=True)
class Holding:
    """A subject that holds one sensitive request in one namespace, and how."""

    namespace: str
    subject: RbacSubject
    permission: str
    atom: Atom
    binding: str
    role: str
    #: Empty: for every object; otherwise only for these names.
    names: tuple[str, ...] = ()


def holdings(snapshot: RbacSnapshot, namespace: str) -> Iterator[Holding]:
    """Every (subject, sensitive request) allowed in ``namespace``, with binding and role."""
    for binding in snapshot.bindings_in(namespace):
        if not binding.subjects:
            continue
        role_key = binding.role_key()
        role = snapshot.roles.get(role_key)
        role_label = str(role) if role is not None else f"{role_key[0]} {role_key[2]}"
        for grant in snapshot.grants(role_key):
            for subject in binding.subjects:
                yield Holding(
                    namespace=namespace,
                    subject=subject,
                    permission=PERMISSION_OF[grant.atom],
                    atom=grant.atom,
                    binding=str(binding),
                    role=role_label,
                    names=tuple(sorted(grant.names)),
                )


@dataclass(frozen=True)
class AccessRow:
    """One line of the access review: a subject's permission in a protected namespace."""

    namespace: str
    subject_kind: str
    subject: str
    subject_namespace: str
    permission: str
    verbs: tuple[str, ...]
    binding: str
    role: str
    resource_names: tuple[str, ...]
    built_in: bool
    #: The job function that allows it ("" when none does).
    job_function: str
    #: Policies whose access section this row breaks (empty: allowed or built-in).
    violates: tuple[str, ...]


def _governing(policies: Iterable[Policy], namespace: NamespaceFacts) -> list[Policy]:
    return [p for p in policies if p.access is not None and p.governs_namespace(namespace)]


def _allowed_by(policy: Policy, holding: Holding) -> str | None:
    assert policy.access is not None
    return policy.access.allowing(holding.subject, holding.permission, holding.namespace)


def access_review(
    snapshot: RbacSnapshot,
    namespaces: Iterable[NamespaceFacts],
    policies: Iterable[Policy],
) -> list[AccessRow]:
    """For each namespace an access policy selects: who holds each sensitive permission,
    through which binding and role, and which policies that breaks. A row groups the verbs of
    one (subject, permission, binding, role, names); rows are sorted for stable output."""
    policies = tuple(policies)
    rows = []
    for namespace in namespaces:
        governing = _governing(policies, namespace)
        if not governing:
            continue
        grouped: dict[tuple[Any, ...], list[Holding]] = {}
        for holding in holdings(snapshot, namespace.name):
            key = (
                holding.subject,
                holding.permission,
                holding.binding,
                holding.role,
                holding.names,
            )
            grouped.setdefault(key, []).append(holding)
        for (subject, permission, binding, role, names), items in grouped.items():
            built_in = is_built_in(subject)
            jobs = [_allowed_by(p, items[0]) for p in governing]
            rows.append(
                AccessRow(
                    namespace=namespace.name,
                    subject_kind=subject.kind,
                    subject=subject.name,
                    subject_namespace=subject.namespace,
                    permission=permission,
                    verbs=tuple(sorted({_verb(h.atom) for h in items})),
                    binding=binding,
                    role=role,
                    resource_names=names,
                    built_in=built_in,
                    job_function=next((j for j in jobs if j), ""),
                    violates=tuple(
                        str(p.ref)
                        for p, job in zip(governing, jobs, strict=True)
                        if job is None and not built_in
                    ),
                )
            )
    return sorted(
        rows,
        key=lambda r: (
            r.namespace,
            r.permission,
            r.subject_kind,
            r.subject_namespace,
            r.subject,
            r.binding,
        ),
    )


def row_atoms(row: AccessRow) -> tuple[Atom, ...]:
    """The requests an access review row stands for."""
    return tuple(a for a in SENSITIVE[row.permission] if _verb(a) in row.verbs)


def row_subject(row: AccessRow) -> RbacSubject:
    return RbacSubject(row.subject_kind, row.subject, row.subject_namespace)


def _verb(atom: Atom) -> str:
    """A verb, with the resource for the workload permission (it spans several resources)."""
    if PERMISSION_OF[atom] == "workloads":
        group = f"{atom.group}/" if atom.group else ""
        return f"{atom.verb} {group}{atom.combined}"
    return atom.verb


# -- admission ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Breach:
    policy: PolicyRef
    namespace: str
    subject: RbacSubject
    permission: str
    binding: str
    role: str


def _breaches(
    snapshot: RbacSnapshot,
    bindings: Iterable[BindingFacts],
    namespaces: Iterable[NamespaceFacts],
    policies: tuple[Policy, ...],
) -> dict[_Breach, Policy]:
    """Every (policy, namespace, subject, permission) the given bindings give against the
    policies' job functions; built-in subjects never count."""
    found: dict[_Breach, Policy] = {}
    bindings = tuple(bindings)
    for namespace in namespaces:
        governing = _governing(policies, namespace)
        if not governing:
            continue
        for binding in bindings:
            if binding.kind == "RoleBinding" and binding.namespace != namespace.name:
                continue
            role_key = binding.role_key()
            role = snapshot.roles.get(role_key)
            permissions = {PERMISSION_OF[g.atom] for g in snapshot.grants(role_key)}
            for subject in binding.subjects:
                if is_built_in(subject):
                    continue
                for permission in sorted(permissions):
                    for policy in governing:
                        assert policy.access is not None
                        if policy.access.allowing(subject, permission, namespace.name) is None:
                            breach = _Breach(
                                policy.ref,
                                namespace.name,
                                subject,
                                permission,
                                str(binding),
                                str(role) if role else f"{role_key[0]} {role_key[2]}",
                            )
                            found[breach] = policy
    return found


MAX_NAMESPACES_NAMED = 5


def _listed(items: Iterable[str], limit: int = MAX_NAMESPACES_NAMED) -> str:
    names = sorted(set(items))
    text = ", ".join(names[:limit])
    return text + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _findings(breaches: Mapping[_Breach, Policy], rule_id: str, via: str) -> Decision:
    """One finding per (policy, subject, binding), naming the permissions and namespaces:
    a wildcard role breaks every permission at once, and the denial must stay readable."""
    grouped: dict[tuple[Any, ...], tuple[set[str], set[str]]] = {}
    policies: dict[PolicyRef, Policy] = {}
    for breach, policy in breaches.items():
        key = (breach.policy, breach.subject, breach.binding, breach.role)
        permissions, namespaces = grouped.setdefault(key, (set(), set()))
        permissions.add(breach.permission)
        namespaces.add(breach.namespace)
        policies[breach.policy] = policy
    findings = []
    for (ref, subject, binding, role), (permissions, namespaces) in sorted(
        grouped.items(), key=lambda item: (str(item[0][0]), item[0][1:])
    ):
        what = _listed(permissions, limit=len(PERMISSIONS))
        plural = "s" if len(permissions) > 1 else ""
        where = f"namespace{'s' if len(namespaces) > 1 else ''} {_listed(namespaces)}"
        policy = policies[ref]
        assert policy.access is not None
        jobs = ", ".join(j.name for j in policy.access.job_functions) or "none"
        if rule_id == "MW-ACC-001":
            message = (
                f"{binding} gives {subject} the sensitive permission{plural} {what} (through "
                f"{role}) in {where}, which no job function of the policy allows"
            )
            fix = (
                f"bind a role without {what}, or bind a subject of an allowed job function "
                f"({jobs}), or add the subject to one in spec.access.jobFunctions"
            )
        else:
            message = (
                f"{via} would give {subject} the sensitive permission{plural} {what} in "
                f"{where} through {binding} (role {role}), which no job function of the "
                "policy allows"
            )
            fix = f"leave {what} out of the role, or remove the subject from {binding} ({jobs})"
        findings.append(Finding(Violation(rule_id, message, fix), ref, policy.access.mode))
    return Decision(tuple(findings))


def evaluate_binding(
    obj: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    *,
    snapshot: RbacSnapshot,
    namespaces: Iterable[NamespaceFacts],
    policies: Iterable[Policy],
) -> Decision:
    """MW-ACC-001 for a RoleBinding or ClusterRoleBinding CREATE or UPDATE (what it adds)."""
    policies = tuple(p for p in policies if p.access is not None)
    if not policies:
        return Decision(())
    namespaces = tuple(namespaces)
    binding = parse_binding(obj)
    if binding.kind == "RoleBinding":
        namespaces = tuple(n for n in namespaces if n.name == binding.namespace) or (
            NamespaceFacts(binding.namespace),
        )
    if binding.role_key() not in snapshot.roles:
        if old is not None and parse_binding(old).subjects == binding.subjects:
            return Decision(())  # nothing added: judged when the role is written
        return _unknown_role(binding, namespaces, policies)
    new = _breaches(snapshot, [binding], namespaces, policies)
    if old is not None:
        before = _breaches(snapshot, [parse_binding(old)], namespaces, policies)
        new = {b: p for b, p in new.items() if b not in before}
    return _findings(new, "MW-ACC-001", str(binding))


def _unknown_role(
    binding: BindingFacts, namespaces: Iterable[NamespaceFacts], policies: tuple[Policy, ...]
) -> Decision:
    """A binding to a role modelward has not seen cannot be judged: refused (in the policies'
    modes) until the role exists, because the role could be created, with any rules, a moment
    after the binding and before the binding reaches modelward's cache."""
    subjects = [s for s in binding.subjects if not is_built_in(s)]
    if not subjects:
        return Decision(())
    role = f"{binding.role_kind} {binding.role_name}"
    findings: dict[PolicyRef, Finding] = {}
    for namespace in namespaces:
        if binding.kind == "RoleBinding" and binding.namespace != namespace.name:
            continue
        for policy in _governing(policies, namespace):
            assert policy.access is not None
            findings.setdefault(
                policy.ref,
                Finding(
                    Violation(
                        "MW-ACC-001",
                        f"{binding} binds {role}, which modelward has not seen (it does not "
                        "exist yet, or was created a moment ago), so the permissions it gives "
                        f"{', '.join(map(str, subjects))} cannot be checked",
                        "create the role first, then the binding (retry in a few seconds)",
                    ),
                    policy.ref,
                    policy.access.mode,
                ),
            )
    return Decision(tuple(findings.values()))


def evaluate_role(
    obj: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    *,
    snapshot: RbacSnapshot,
    namespaces: Iterable[NamespaceFacts],
    policies: Iterable[Policy],
) -> Decision:
    """MW-ACC-002 for a Role or ClusterRole CREATE or UPDATE: what the bindings of this role,
    and of every aggregated ClusterRole it joins, would newly give."""
    policies = tuple(p for p in policies if p.access is not None)
    if not policies:
        return Decision(())
    namespaces = tuple(namespaces)
    role = parse_role(obj)
    previous = parse_role(old) if old is not None else snapshot.roles.get(role.key)
    before = snapshot.with_role(previous, key=role.key)
    after = snapshot.with_role(role, key=role.key)
    affected: set[RoleKey] = after.aggregating(role.key) | before.aggregating(role.key)
    bindings = [b for b in snapshot.bindings if b.role_key() in affected]
    if not bindings:
        return Decision(())
    new = _breaches(after, bindings, namespaces, policies)
    old_breaches = _breaches(before, bindings, namespaces, policies)
    added = {b: p for b, p in new.items() if b not in old_breaches}
    return _findings(added, "MW-ACC-002", str(role))


def is_rbac_object(obj: Mapping[str, Any]) -> bool:
    api = str(obj.get("apiVersion") or "")
    return api.startswith("rbac.authorization.k8s.io/") and obj.get("kind") in (
        *BINDING_KINDS,
        *ROLE_KINDS,
    )
