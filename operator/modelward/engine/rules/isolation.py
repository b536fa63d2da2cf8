"""Isolation rules (MW-ISO-*): namespaces, Pod Security, sandboxes, GPU pools, tokens, network.

Patch mode fills only fields that are *unset*: an explicit insecure value (``privileged: true``,
``runAsNonRoot: false``) is a decision somebody made, so it is denied, never silently flipped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from modelward.engine.decision import Remedy, Violation
from modelward.engine.facts import NamespaceFacts
from modelward.engine.policy import GpuPool, IsolationConfig
from modelward.engine.selectors import matches_any_glob
from modelward.engine.workloads import ContainerRef, Workload

RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
        "image",
    }
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)


def _mapping(value: Any) -> Mapping[str, Any]:
    # dict first: JSON objects are dicts, and the Mapping ABC check costs several times more.
    return value if type(value) is dict or isinstance(value, Mapping) else {}


def _pod_sc(w: Workload) -> Mapping[str, Any]:
    return _mapping(w.pod_spec.get("securityContext"))


def _sc(c: ContainerRef) -> Mapping[str, Any]:
    return _mapping(c.spec.get("securityContext"))


def check_isolation(w: Workload, ns: NamespaceFacts, cfg: IsolationConfig) -> Iterator[Violation]:
    if matches_any_glob(ns.name, cfg.forbidden_namespaces):
        yield Violation(
            "MW-ISO-001",
            f'namespace "{ns.name}" may not run model-serving workloads',
            "deploy into a dedicated model-serving namespace",
        )
    if cfg.pod_security in ("baseline", "restricted"):
        yield from _baseline(w)
    if cfg.pod_security == "restricted":
        yield from _restricted(w)
    if cfg.runtime_class_names:
        yield from _runtime_class(w, cfg)
    if cfg.gpu is not None:
        yield from _node_name(w)
        yield from _gpu(w, cfg.gpu)
    if cfg.forbid_token_automount:
        yield from _token_automount(w)
        yield from _projected_tokens(w, cfg.allowed_token_audiences)
    if cfg.require_default_deny:
        yield from _default_deny(w, ns)


def _default_deny(w: Workload, ns: NamespaceFacts) -> Iterator[Violation]:
    """MW-ISO-014: default-deny in the namespace, and no NetworkPolicy that undoes it.

    NetworkPolicies add up: a pod is reachable from wherever any policy selecting it allows,
    so one allow-all policy beside the default-deny opens the model to every caller.
    """
    if ns.has_default_deny is False:
        yield Violation(
            "MW-ISO-014",
            f'namespace "{ns.name}" has no default-deny NetworkPolicy',
            "apply a NetworkPolicy with podSelector: {} and policyTypes: [Ingress] and no "
            "ingress rules, then allow only the callers that need the model",
        )
        return
    for name, selector in ns.open_ingress:
        if selector.matches(w.labels):
            yield Violation(
                "MW-ISO-014",
                f'NetworkPolicy "{name}" allows ingress from every source to this pod, which '
                "undoes the namespace's default-deny",
                "give each of its ingress rules a `from` that names only the callers that "
                "need the model (a namespaceSelector and podSelector), or delete it",
            )


# -- baseline -----------------------------------------------------------------------------------


def _baseline(w: Workload) -> Iterator[Violation]:
    spec = w.pod_spec
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field) is True:
            yield Violation("MW-ISO-007", f"{field} is true", f"remove {field} from the pod spec")
    for volume in spec.get("volumes") or []:
        if isinstance(volume, Mapping) and "hostPath" in volume:
            yield Violation(
                "MW-ISO-008",
                f'volume "{volume.get("name")}" is a hostPath',
                "use a PersistentVolumeClaim, an image volume or an emptyDir instead",
            )
    pod_opts = _mapping(_pod_sc(w).get("windowsOptions"))
    if pod_opts.get("hostProcess") is True:
        yield Violation(
            "MW-ISO-006",
            "the pod is a Windows hostProcess pod",
            "remove securityContext.windowsOptions.hostProcess",
        )
    yield from _baseline_hardening(w.pod_spec, _pod_sc(w), None)
    for c in w.containers():
        sc = _sc(c)
        if sc.get("privileged") is True:
            yield Violation(
                "MW-ISO-006",
                "runs privileged",
                "remove securityContext.privileged",
                container=c.describe,
            )
        if _mapping(sc.get("windowsOptions")).get("hostProcess") is True:
            yield Violation(
                "MW-ISO-006",
                "is a Windows hostProcess container",
                "remove securityContext.windowsOptions.hostProcess",
                container=c.describe,
            )
        for port in c.spec.get("ports") or []:
            if isinstance(port, Mapping) and port.get("hostPort"):
                yield Violation(
                    "MW-ISO-009",
                    f"binds host port {port.get('hostPort')}",
                    "remove hostPort and expose the port through a Service",
                    container=c.describe,
                )
        yield from _baseline_hardening({}, sc, c)


def _baseline_hardening(
    pod_spec: Mapping[str, Any], sc: Mapping[str, Any], c: ContainerRef | None
) -> Iterator[Violation]:
    where = c.describe if c else None
    apparmor = _mapping(sc.get("appArmorProfile")).get("type")
    if apparmor == "Unconfined":
        yield Violation(
            "MW-ISO-015",
            "AppArmor profile is Unconfined",
            "use appArmorProfile.type RuntimeDefault or Localhost",
            container=where,
        )
    selinux = _mapping(sc.get("seLinuxOptions"))
    if selinux.get("user") or selinux.get("role") or selinux.get("type", "") not in SELINUX_TYPES:
        yield Violation(
            "MW-ISO-015",
            "sets a custom SELinux user, role or type",
            "remove seLinuxOptions.user/role; use a container_t type",
            container=where,
        )
    if sc.get("procMount") not in (None, "Default"):
        yield Violation(
            "MW-ISO-015",
            f"procMount is {sc.get('procMount')}",
            "remove procMount (Default)",
            container=where,
        )
    for sysctl in sc.get("sysctls") or []:
        if isinstance(sysctl, Mapping) and sysctl.get("name") not in SAFE_SYSCTLS:
            yield Violation(
                "MW-ISO-015",
                f"sets unsafe sysctl {sysctl.get('name')}",
                "remove the sysctl",
                container=where,
            )


# -- restricted ---------------------------------------------------------------------------------


def _restricted(w: Workload) -> Iterator[Violation]:
    pod_sc = _pod_sc(w)
    pod_nonroot = pod_sc.get("runAsNonRoot")
    pod_seccomp = _mapping(pod_sc.get("seccompProfile")).get("type")
    if pod_sc.get("runAsUser") == 0:
        yield Violation(
            "MW-ISO-002",
            "the pod sets runAsUser: 0",
            "run as a non-zero UID (e.g. runAsUser: 65532)",
        )
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        yield Violation(
            "MW-ISO-005",
            f"the pod's seccomp profile is {pod_seccomp}",
            "use seccompProfile.type RuntimeDefault",
        )
    set_pod_nonroot = Remedy(("securityContext", "runAsNonRoot"), True)
    set_pod_seccomp = Remedy(("securityContext", "seccompProfile"), {"type": "RuntimeDefault"})
    for volume in w.pod_spec.get("volumes") or []:
        if isinstance(volume, Mapping):
            kinds = set(volume) - {"name"}
            bad = sorted(k for k in kinds if k not in RESTRICTED_VOLUME_TYPES and k != "hostPath")
            if bad:
                yield Violation(
                    "MW-ISO-016",
                    f'volume "{volume.get("name")}" is of type {", ".join(bad)}',
                    "use a PersistentVolumeClaim, csi, image, projected, secret or emptyDir volume",
                )
    for c in w.containers():
        sc = _sc(c)
        nonroot = sc.get("runAsNonRoot", pod_nonroot)
        if sc.get("runAsUser") == 0:
            yield Violation(
                "MW-ISO-002", "sets runAsUser: 0", "run as a non-zero UID", container=c.describe
            )
        elif nonroot is not True:
            explicit = nonroot is False
            yield Violation(
                "MW-ISO-002",
                "runAsNonRoot is false" if explicit else "runAsNonRoot is not set",
                (
                    "set securityContext.runAsNonRoot: true; the image must then run as a"
                    " non-root user (its USER or runAsUser), or the kubelet refuses to start it"
                ),
                container=c.describe,
                remedies=() if explicit else (set_pod_nonroot,),
            )
        ape = sc.get("allowPrivilegeEscalation")
        # The API server refuses allowPrivilegeEscalation: false next to privileged or
        # CAP_SYS_ADMIN, so those containers get no remedy (MW-ISO-004/006 deny them anyway).
        conflicting = sc.get("privileged") is True or "SYS_ADMIN" in (
            _mapping(sc.get("capabilities")).get("add") or []
        )
        if ape is not False:
            yield Violation(
                "MW-ISO-003",
                "allowPrivilegeEscalation is true"
                if ape
                else "allowPrivilegeEscalation is not false",
                "set securityContext.allowPrivilegeEscalation: false",
                container=c.describe,
                remedies=()
                if ape or conflicting
                else (Remedy((*c.path, "securityContext", "allowPrivilegeEscalation"), False),),
            )
        yield from _capabilities(c, sc)
        seccomp = _mapping(sc.get("seccompProfile")).get("type")
        if seccomp not in (None, "RuntimeDefault", "Localhost"):
            yield Violation(
                "MW-ISO-005",
                f"seccomp profile is {seccomp}",
                "use seccompProfile.type RuntimeDefault",
                container=c.describe,
            )
        elif seccomp is None and pod_seccomp is None:
            yield Violation(
                "MW-ISO-005",
                "has no seccomp profile",
                "set securityContext.seccompProfile.type: RuntimeDefault",
                container=c.describe,
                remedies=(set_pod_seccomp,),
            )


def _capabilities(c: ContainerRef, sc: Mapping[str, Any]) -> Iterator[Violation]:
    caps = _mapping(sc.get("capabilities"))
    added = [str(a) for a in caps.get("add") or [] if str(a) != "NET_BIND_SERVICE"]
    if added:
        yield Violation(
            "MW-ISO-004",
            f"adds capabilities {', '.join(added)}",
            "remove them from capabilities.add (only NET_BIND_SERVICE is allowed)",
            container=c.describe,
        )
    drop = caps.get("drop")
    if not isinstance(drop, list) or "ALL" not in drop:
        path = (*c.path, "securityContext", "capabilities", "drop")
        remedy = (
            Remedy(path, "ALL", append=True) if isinstance(drop, list) else Remedy(path, ["ALL"])
        )
        yield Violation(
            "MW-ISO-004",
            "does not drop ALL capabilities",
            "set securityContext.capabilities.drop: [ALL]",
            container=c.describe,
            remedies=(remedy,),
        )


# -- runtime classes, GPUs, tokens --------------------------------------------------------------


def _runtime_class(w: Workload, cfg: IsolationConfig) -> Iterator[Violation]:
    current = w.pod_spec.get("runtimeClassName")
    if current in cfg.runtime_class_names:
        return
    allowed = ", ".join(cfg.runtime_class_names)
    remedies: tuple[Remedy, ...] = ()
    if current is None and cfg.default_runtime_class_name:
        remedies = (Remedy(("runtimeClassName",), cfg.default_runtime_class_name),)
    yield Violation(
        "MW-ISO-010",
        f"runtimeClassName {current!r} is not a sandboxed runtime"
        if current
        else "no runtimeClassName (not sandboxed)",
        f"set runtimeClassName to one of: {allowed}",
        remedies=remedies,
    )


def _requests_gpu(w: Workload, pool: GpuPool) -> bool:
    for c in w.containers():
        resources = _mapping(c.spec.get("resources"))
        for section in ("limits", "requests"):
            amounts = _mapping(resources.get(section))
            for name in pool.resources:
                if name in amounts and str(amounts[name]) not in ("0", ""):
                    return True
    return False


def _tolerates(toleration: Mapping[str, Any], taint: Mapping[str, str]) -> bool:
    """Kubernetes' toleration semantics for a taint with the pool's key, value and effect."""
    effect = toleration.get("effect")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key")
    operator = toleration.get("operator") or "Equal"
    if not key:
        return operator == "Exists"
    if key != taint.get("key"):
        return False
    return operator == "Exists" or toleration.get("value", "") == taint.get("value", "")


def _has_required_affinity(spec: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    affinity = _mapping(_mapping(spec.get("affinity")).get("nodeAffinity"))
    required = _mapping(affinity.get("requiredDuringSchedulingIgnoredDuringExecution"))
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return False

    def term_pins(term: Mapping[str, Any]) -> bool:
        pinned = {
            e.get("key"): set(e.get("values") or [])
            for e in term.get("matchExpressions") or []
            if isinstance(e, Mapping) and e.get("operator") == "In"
        }
        return all(pinned.get(k) == {v} for k, v in labels.items())

    return all(isinstance(t, Mapping) and term_pins(t) for t in terms)


def _gpu(w: Workload, pool: GpuPool) -> Iterator[Violation]:
    tolerations = [t for t in w.pod_spec.get("tolerations") or [] if isinstance(t, Mapping)]
    tolerated = any(_tolerates(t, pool.toleration) for t in tolerations)
    taint = pool.toleration.get("key", "")
    if not _requests_gpu(w, pool):
        if tolerated:
            yield Violation(
                "MW-ISO-012",
                f"the pod requests no GPU but tolerates the GPU taint {taint}",
                "remove the toleration so that GPU nodes stay dedicated to GPU workloads",
            )
        return
    node_selector = _mapping(w.pod_spec.get("nodeSelector"))
    on_pool = all(node_selector.get(k) == v for k, v in pool.node_selector.items())
    if not on_pool and not _has_required_affinity(w.pod_spec, pool.node_selector):
        wanted = ", ".join(f"{k}={v}" for k, v in pool.node_selector.items())
        yield Violation(
            "MW-ISO-011",
            "the pod requests a GPU but is not pinned to the GPU pool",
            f"add nodeSelector {wanted} (or an equivalent required node affinity)",
            remedies=tuple(Remedy(("nodeSelector", k), v) for k, v in pool.node_selector.items()),
        )
    if not tolerated:
        yield Violation(
            "MW-ISO-011",
            f"the pod requests a GPU but does not tolerate the GPU taint {taint}",
            f"add a toleration for {taint} ({pool.toleration.get('effect')})",
            remedies=(Remedy(("tolerations",), dict(pool.toleration), append=True),),
        )


def _node_name(w: Workload) -> Iterator[Violation]:
    """MW-ISO-012: a pod that names its node skips the scheduler, and with it the GPU taint.

    The kubelet admits a pod bound to it by ``spec.nodeName`` without checking NoSchedule
    taints, so a pod with no GPU (and no toleration) could still land on the GPU pool.
    Legitimate placement does not need it: the scheduler binds through the ``pods/binding``
    subresource (not a Pod CREATE), and DaemonSet pods carry a node affinity instead.

    A stored pod (one with a ``resourceVersion``: the audit's, or the old and new object of
    an UPDATE) has a nodeName because the scheduler bound it; only a pod being created, or a
    template, chose its node itself. The API server refuses a CREATE that sets a
    resourceVersion, so a new pod cannot pass for a stored one.
    """
    node = w.pod_spec.get("nodeName")
    if not node:
        return
    if w.kind == "Pod" and (w.template_metadata or {}).get("resourceVersion"):
        return
    yield Violation(
        "MW-ISO-012",
        f"spec.nodeName {node!r} places the pod without the scheduler, past the GPU taint "
        "and node selectors",
        "remove spec.nodeName and choose nodes with nodeSelector or a required node affinity",
    )


def _token_automount(w: Workload) -> Iterator[Violation]:
    value = w.pod_spec.get("automountServiceAccountToken")
    if value is False:
        return
    yield Violation(
        "MW-ISO-013",
        "automountServiceAccountToken is true"
        if value
        else "the service account token is automounted",
        "set automountServiceAccountToken: false (mount a projected token only where needed)",
        remedies=() if value else (Remedy(("automountServiceAccountToken",), False),),
    )


#: The volume the API server's ServiceAccount admission plugin adds to a pod that does not
#: set ``automountServiceAccountToken: false``, before any webhook sees the pod.
_API_ACCESS_PREFIX = "kube-api-access-"


def _is_automounted_token(volume: Mapping[str, Any]) -> bool:
    """Whether ``volume`` is the token volume the API server injected: its name and exactly its
    three sources (an API token without audience, the cluster CA, the namespace)."""
    if not str(volume.get("name", "")).startswith(_API_ACCESS_PREFIX):
        return False
    sources = [_mapping(s) for s in _mapping(volume.get("projected")).get("sources") or []]
    kinds = sorted(key for source in sources for key in source)
    if kinds != ["configMap", "downwardAPI", "serviceAccountToken"]:
        return False
    token = next(_mapping(s["serviceAccountToken"]) for s in sources if "serviceAccountToken" in s)
    return not token.get("audience")


def _unmount(w: Workload, volume: str) -> tuple[Remedy, ...]:
    """Remove ``volume`` and every container's mount of it."""
    mounts = tuple(
        Remedy((c.list_name, c.index, "volumeMounts"), volume, remove=True)
        for c in w.containers()
        if not c.is_ephemeral
        and any(_mapping(m).get("name") == volume for m in c.spec.get("volumeMounts") or [])
    )
    return (*mounts, Remedy(("volumes",), volume, remove=True))


def _projected_tokens(w: Workload, allowed_audiences: tuple[str, ...]) -> Iterator[Violation]:
    """MW-ISO-013: a service account token projected by hand is an API token all the same.

    A ``serviceAccountToken`` projection without an audience gets the API server's, and the
    API server's own audiences are cluster settings the engine cannot see; so only the
    audiences a policy lists (a secrets manager's, say) are taken to be for someone else.

    The volume the API server itself injected because ``automountServiceAccountToken`` was
    unset is the automount: Patch mode removes it (and its mounts) along with setting the field
    to false, since the field alone no longer unmounts what was already added. A pod that
    asks for the token (``true``) is denied, not patched.
    """
    for volume in w.pod_spec.get("volumes") or []:
        projected = _mapping(volume).get("projected")
        if not projected:
            continue  # most volumes: one look-up
        for source in _mapping(projected).get("sources") or []:
            token = _mapping(source).get("serviceAccountToken")
            if token is None:
                continue
            audience = _mapping(token).get("audience")
            if audience and audience in allowed_audiences:
                continue
            what = f"audience {audience!r}" if audience else "no audience (the API server's)"
            name = str(_mapping(volume).get("name"))
            injected = w.pod_spec.get(
                "automountServiceAccountToken"
            ) is not True and _is_automounted_token(_mapping(volume))
            yield Violation(
                "MW-ISO-013",
                f'volume "{name}" is the API token the API server mounted because '
                "automountServiceAccountToken is unset"
                if injected
                else f'volume "{name}" projects a service account token with {what}',
                "set automountServiceAccountToken: false (Patch mode also removes this volume "
                "and its mounts)"
                if injected
                else "remove the serviceAccountToken source, or request the token for the "
                "service that needs it with an audience listed in "
                "isolation.allowedServiceAccountTokenAudiences",
                remedies=_unmount(w, name) if injected else (),
            )
            break
