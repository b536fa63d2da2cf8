"""Transport rules (MW-TLS-*): TLS on every endpoint of a model-serving pod, and on every way
in from outside: Ingresses, externally reachable Services and Gateway API routes.

What counts as TLS evidence for a pod (docs/rules.md, "What counts as evidence"):

- **Mesh injection, decided as the mesh decides it.** A label or annotation only counts when
  the mesh's own injector would act on it: Istio's pod *label* ``sidecar.istio.io/inject`` wins
  over the deprecated annotation, a namespace ``istio-injection`` label other than ``enabled``
  switches injection off whatever the pod says, and the object-level webhooks only read pod
  labels; an ambient pod labelled ``istio.io/dataplane-mode`` with any value but ``ambient``
  (``none``) is out of the mesh; Linkerd's pod annotation replaces the namespace's, whatever its
  value. hostNetwork pods are never meshed, and ports a pod excludes from the proxy
  (``excludeInboundPorts``, ``skip-inbound-ports``, ambient's inbound bypass) are plain text.
- **A mounted certificate.** modelward never reads Secrets (least privilege), so a Secret's
  name proves nothing: the volume must project the keys ``tls.crt`` and ``tls.key`` (the pod
  cannot start unless the Secret holds them, unless the volume is optional), or be a
  cert-manager CSI volume, and every container with ports must mount it whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from modelward.engine.decision import Violation
from modelward.engine.facts import ClusterFacts, NamespaceFacts
from modelward.engine.policy import IngressConfig, TransportConfig
from modelward.engine.selectors import matches_any_glob
from modelward.engine.workloads import ContainerRef, Workload

# -- mesh injection ----------------------------------------------------------------------------

ISTIO_INJECT = "sidecar.istio.io/inject"
ISTIO_NAMESPACE_INJECTION = "istio-injection"
ISTIO_REVISION = "istio.io/rev"
ISTIO_DATAPLANE_MODE = "istio.io/dataplane-mode"
ISTIO_AMBIENT_INBOUND_BYPASS = "ambient.istio.io/bypass-inbound-capture"
ISTIO_EXCLUDE_INBOUND = "traffic.sidecar.istio.io/excludeInboundPorts"
ISTIO_INCLUDE_INBOUND = "traffic.sidecar.istio.io/includeInboundPorts"
LINKERD_INJECT = "linkerd.io/inject"
LINKERD_SKIP_INBOUND = "config.linkerd.io/skip-inbound-ports"
#: Linkerd's injector webhook skips namespaces and pods carrying these (its chart's selectors).
LINKERD_WEBHOOK_NAMESPACE_OPT_OUT = ("config.linkerd.io/admission-webhooks", "disabled")
LINKERD_WEBHOOK_POD_OPT_OUTS = ("linkerd.io/control-plane-component", "linkerd.io/cni-resource")
#: Namespaces neither mesh injects into.
NEVER_MESHED_NAMESPACES = frozenset({"kube-system", "kube-public"})
#: Go's strconv.ParseBool true spellings: what Istio reads a boolean annotation as.
GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})


def _host_network(w: Workload) -> bool:
    return w.pod_spec.get("hostNetwork") is True


def istio_sidecar(w: Workload, ns: NamespaceFacts) -> bool:
    """Whether Istio's sidecar injector, as installed by default, injects this pod.

    The injector's webhooks (istio's ``mutatingwebhook.yaml``): with a namespace
    ``istio-injection`` label only ``enabled`` injects; else a namespace ``istio.io/rev``
    injects; else only the pod *labels* ``sidecar.istio.io/inject=true`` or ``istio.io/rev``
    call the injector. Once called, the injector reads the label, or the annotation when there
    is no label (``injectRequired``). Values other than ``true`` are read differently across
    Istio versions, so only an absent choice or exactly ``true`` counts.
    """
    if _host_network(w) or ns.name in NEVER_MESHED_NAMESPACES:
        return False
    choice = w.labels[ISTIO_INJECT] if ISTIO_INJECT in w.labels else w.annotations.get(ISTIO_INJECT)
    if choice not in (None, "true"):
        return False
    namespace_injection = ns.labels.get(ISTIO_NAMESPACE_INJECTION)
    if namespace_injection is not None:
        return namespace_injection == "enabled"
    if ns.labels.get(ISTIO_REVISION):
        return True
    return w.labels.get(ISTIO_INJECT) == "true" or bool(w.labels.get(ISTIO_REVISION))


def istio_ambient(w: Workload, ns: NamespaceFacts) -> bool:
    """Whether Istio's ambient data plane captures this pod's inbound traffic.

    The pod's ``istio.io/dataplane-mode`` label, when present, decides (``none`` opts out);
    otherwise the namespace's. hostNetwork pods cannot be captured, and
    ``ambient.istio.io/bypass-inbound-capture`` leaves inbound traffic to the pod alone.
    """
    if _host_network(w) or ns.name in NEVER_MESHED_NAMESPACES:
        return False
    if w.annotations.get(ISTIO_AMBIENT_INBOUND_BYPASS) in GO_TRUE:
        return False
    mode = w.labels.get(ISTIO_DATAPLANE_MODE)
    if mode is not None:
        return mode == "ambient"
    return ns.labels.get(ISTIO_DATAPLANE_MODE) == "ambient"


def linkerd_proxy(w: Workload, ns: NamespaceFacts) -> bool:
    """Whether Linkerd's proxy injector injects this pod.

    A non-empty pod annotation ``linkerd.io/inject`` replaces the namespace's, whatever its
    value; only ``enabled`` and ``ingress`` inject. The injector's webhook skips namespaces
    labelled ``config.linkerd.io/admission-webhooks=disabled`` and pods with a control-plane or
    CNI label, and the injector skips hostNetwork pods.
    """
    if _host_network(w) or ns.name in NEVER_MESHED_NAMESPACES:
        return False
    key, value = LINKERD_WEBHOOK_NAMESPACE_OPT_OUT
    if ns.labels.get(key) == value or any(k in w.labels for k in LINKERD_WEBHOOK_POD_OPT_OUTS):
        return False
    choice = w.annotations.get(LINKERD_INJECT) or ns.annotations.get(LINKERD_INJECT)
    return choice in ("enabled", "ingress")


def _port_spec(value: str) -> frozenset[int] | None:
    """Ports and ranges as the meshes write them (``80,8000-8080``); None when unreadable."""
    ports: set[int] = set()
    for part in value.split(","):
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            return None
        first, last = int(low), int(high or low)
        if last - first > 65535:
            return None
        ports.update(range(first, last + 1))
    return frozenset(ports)


def _bypasses(port: int, *, excluded: str | None, included: str | None) -> bool:
    """Whether a mesh proxy leaves ``port`` alone, given its exclude/include annotations."""
    if excluded:
        ports = _port_spec(excluded)
        if ports is None or port in ports:
            return True
    if included is not None and included.strip() != "*":
        ports = _port_spec(included) if included.strip() else frozenset()
        if ports is None or port not in ports:
            return True
    return False


def _mesh_covers_ports(
    mesh: str, w: Workload, ns: NamespaceFacts, containers: list[ContainerRef]
) -> bool:
    """Whether the mesh proxy captures every declared port of ``containers``.

    With an exclusion annotation, a container that declares no port could serve on an excluded
    one, so the mesh is no evidence for it.
    """
    if mesh == "istio":
        excluded = w.annotations.get(ISTIO_EXCLUDE_INBOUND)
        included = w.annotations.get(ISTIO_INCLUDE_INBOUND)
    else:
        excluded = w.annotations.get(LINKERD_SKIP_INBOUND) or ns.annotations.get(
            LINKERD_SKIP_INBOUND
        )
        included = None
    if not excluded and included is None:
        return True
    for c in containers:
        ports = [p for p in c.spec.get("ports") or [] if isinstance(p, Mapping)]
        if not ports:
            return False
        for p in ports:
            number = p.get("containerPort")
            if not isinstance(number, int) or _bypasses(
                number, excluded=excluded, included=included
            ):
                return False
    return True


def mesh_protected(
    w: Workload,
    ns: NamespaceFacts,
    meshes: tuple[str, ...],
    containers: list[ContainerRef] | None = None,
) -> str | None:
    """The mesh that gives this pod's serving ports mTLS, if any."""
    serving = containers if containers is not None else list(w.serving_containers())
    if "istio" in meshes:
        if istio_sidecar(w, ns) and _mesh_covers_ports("istio", w, ns, serving):
            return "istio"
        if istio_ambient(w, ns):
            return "istio"
    if (
        "linkerd" in meshes
        and linkerd_proxy(w, ns)
        and _mesh_covers_ports("linkerd", w, ns, serving)
    ):
        return "linkerd"
    return None


# -- mounted certificates ----------------------------------------------------------------------

TLS_KEYS = frozenset({"tls.crt", "tls.key"})
CERT_MANAGER_CSI_DRIVER = "csi.cert-manager.io"
CERT_MANAGER_ISSUER_ATTRIBUTE = "csi.cert-manager.io/issuer-name"


def _projects_tls_pair(source: Any, name_key: str, patterns: tuple[str, ...]) -> bool:
    """A Secret source that must hold a certificate and key for the pod to start."""
    if not isinstance(source, Mapping) or source.get("optional") is True:
        return False
    name = source.get(name_key)
    if not isinstance(name, str) or not matches_any_glob(name, patterns):
        return False
    keys = {i.get("key") for i in source.get("items") or [] if isinstance(i, Mapping)}
    return keys >= TLS_KEYS


def _is_certificate_volume(volume: Mapping[str, Any], patterns: tuple[str, ...]) -> bool:
    if _projects_tls_pair(volume.get("secret"), "secretName", patterns):
        return True
    projected = volume.get("projected")
    if isinstance(projected, Mapping):
        for source in projected.get("sources") or []:
            if isinstance(source, Mapping) and _projects_tls_pair(
                source.get("secret"), "name", patterns
            ):
                return True
    csi = volume.get("csi")
    return (
        isinstance(csi, Mapping)
        and csi.get("driver") == CERT_MANAGER_CSI_DRIVER
        and bool((csi.get("volumeAttributes") or {}).get(CERT_MANAGER_ISSUER_ATTRIBUTE))
    )


def certificate_volumes(w: Workload, patterns: tuple[str, ...]) -> set[str]:
    """Names of the pod's volumes that provably carry a TLS certificate and key."""
    return {
        str(v.get("name"))
        for v in w.pod_spec.get("volumes") or []
        if isinstance(v, Mapping) and _is_certificate_volume(v, patterns)
    }


def _mounts_whole(c: ContainerRef, volumes: set[str]) -> bool:
    """A mount of one of ``volumes`` without subPath (a subPath shows one file, or another)."""
    return any(
        isinstance(m, Mapping)
        and m.get("name") in volumes
        and not m.get("subPath")
        and not m.get("subPathExpr")
        for m in c.spec.get("volumeMounts") or []
    )


def check_transport(w: Workload, ns: NamespaceFacts, cfg: TransportConfig) -> Iterator[Violation]:
    if not cfg.require_tls:
        return
    serving = list(w.serving_containers())
    with_ports = [c for c in serving if c.spec.get("ports")] or serving[:1]
    if mesh_protected(w, ns, cfg.meshes, with_ports):
        return
    volumes = certificate_volumes(w, cfg.tls_secret_names)
    meshes = " or ".join(cfg.meshes) or "a service mesh"
    for c in with_ports:
        if not _mounts_whole(c, volumes):
            yield Violation(
                "MW-TLS-001",
                "serves without TLS evidence: the mesh would not proxy its ports and it mounts "
                "no certificate (a Secret volume projecting tls.crt and tls.key, or a "
                "cert-manager CSI volume)",
                f"enable {meshes} injection for the pod or namespace (and do not exclude its "
                "ports), or mount a kubernetes.io/tls Secret with items tls.crt and tls.key",
                container=c.describe,
            )


# -- exposure: Ingresses, Services, Gateway API routes -----------------------------------------

GATEWAY_GROUP = "gateway.networking.k8s.io"
ROUTE_KINDS = frozenset({"HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"})
#: (API group, kind) of every object that can route outside traffic to pods.
EXPOSURE_KINDS: frozenset[tuple[str, str]] = frozenset(
    {("networking.k8s.io", "Ingress"), ("", "Service")} | {(GATEWAY_GROUP, k) for k in ROUTE_KINDS}
)
EXTERNAL_SERVICE_TYPES = frozenset({"LoadBalancer", "NodePort"})


def api_group(obj: Mapping[str, Any]) -> str:
    api_version = str(obj.get("apiVersion") or "")
    return api_version.rpartition("/")[0]


def is_exposure(obj: Mapping[str, Any]) -> bool:
    """Whether the object routes traffic to pods (the exposure rules judge it)."""
    return (api_group(obj), str(obj.get("kind"))) in EXPOSURE_KINDS


@dataclass(frozen=True)
class Backend:
    """Where an exposure sends traffic: pods known to carry at least ``labels``.

    A Service's selector is all modelward knows of the pods behind it; an unknown Service, a
    Service without selector and any other backend kind give ``{}`` (judged on namespace
    selection alone), never "nothing to judge".
    """

    namespace: str
    labels: Mapping[str, str]
    describe: str


def _service_backend(facts: ClusterFacts, namespace: str, name: str) -> Backend:
    return Backend(
        namespace, facts.service_selector(namespace, name) or {}, f'backend service "{name}"'
    )


def _ingress_backend(facts: ClusterFacts, namespace: str, backend: Any) -> Backend | None:
    if not isinstance(backend, Mapping):
        return None
    service = backend.get("service")
    if isinstance(service, Mapping) and service.get("name"):
        return _service_backend(facts, namespace, str(service["name"]))
    resource = backend.get("resource")
    if isinstance(resource, Mapping):
        kind = f"{resource.get('apiGroup') or 'core'}/{resource.get('kind')}"
        return Backend(namespace, {}, f'backend resource {kind} "{resource.get("name")}"')
    return None


def exposure_backends(obj: Mapping[str, Any], facts: ClusterFacts, namespace: str) -> list[Backend]:
    """Every backend an Ingress, Service or route sends traffic to."""
    spec = obj.get("spec") or {}
    if not isinstance(spec, Mapping):
        return []
    kind = str(obj.get("kind"))
    if kind == "Service":
        selector = spec.get("selector")
        labels = (
            {str(k): str(v) for k, v in selector.items()} if isinstance(selector, Mapping) else {}
        )
        name = str((obj.get("metadata") or {}).get("name") or "")
        return [Backend(namespace, labels, f'service "{name}"')]
    candidates: list[Backend | None] = []
    if kind == "Ingress":
        candidates.append(_ingress_backend(facts, namespace, spec.get("defaultBackend")))
        for rule in spec.get("rules") or []:
            http = (rule or {}).get("http") if isinstance(rule, Mapping) else None
            for path in (http or {}).get("paths") or []:
                if isinstance(path, Mapping):
                    candidates.append(_ingress_backend(facts, namespace, path.get("backend")))
    else:
        candidates.extend(_route_backend(facts, namespace, ref) for ref in _route_refs(spec))
    unique: dict[tuple[str, str], Backend] = {}
    for b in candidates:
        if b is not None:
            unique.setdefault((b.namespace, b.describe), b)
    return list(unique.values())


def _route_refs(spec: Mapping[str, Any]) -> Iterator[Any]:
    """backendRefs of every rule, and the backends of requestMirror filters (a mirror sends a
    copy of every request to its backend)."""

    def mirrors(filters: Any) -> Iterator[Any]:
        for f in filters or []:
            if isinstance(f, Mapping) and isinstance(f.get("requestMirror"), Mapping):
                yield f["requestMirror"].get("backendRef")

    for rule in spec.get("rules") or []:
        if not isinstance(rule, Mapping):
            continue
        yield from mirrors(rule.get("filters"))
        for ref in rule.get("backendRefs") or []:
            yield ref
            if isinstance(ref, Mapping):
                yield from mirrors(ref.get("filters"))


def _route_backend(facts: ClusterFacts, namespace: str, ref: Any) -> Backend | None:
    if not isinstance(ref, Mapping) or not ref.get("name"):
        return None
    target = str(ref.get("namespace") or namespace)
    group, kind = str(ref.get("group") or ""), str(ref.get("kind") or "Service")
    if group == "" and kind == "Service":
        return _service_backend(facts, target, str(ref["name"]))
    return Backend(target, {}, f'backend {group or "core"}/{kind} "{ref["name"]}"')


def _host_covered(host: str, tls_hosts: set[str]) -> bool:
    if host in tls_hosts:
        return True
    _, dot, parent = host.partition(".")
    return bool(dot) and f"*.{parent}" in tls_hosts


def _ingress_tls_gaps(spec: Mapping[str, Any]) -> list[str]:
    """Hosts the Ingress routes without a TLS entry for them ("" for a rule with no host)."""
    tls = [t for t in spec.get("tls") or [] if isinstance(t, Mapping)]
    tls_hosts = {str(h) for t in tls for h in t.get("hosts") or []}
    gaps = []
    for rule in spec.get("rules") or []:
        if not isinstance(rule, Mapping):
            continue
        host = rule.get("host")
        if host and not _host_covered(str(host), tls_hosts):
            gaps.append(str(host))
        elif not host and not tls:
            gaps.append("")
    if not tls and not gaps:
        gaps.append("")  # a default backend alone, served in plain text
    return gaps


def check_ingress(
    ingress: Mapping[str, Any], where: str, cfg: IngressConfig
) -> Iterator[Violation]:
    spec = ingress.get("spec") or {}
    annotations = (ingress.get("metadata") or {}).get("annotations") or {}
    gaps = _ingress_tls_gaps(spec) if cfg.require_tls else []
    if gaps:
        hosts = ", ".join(f'"{h}"' for h in gaps if h)
        yield Violation(
            "MW-TLS-002",
            "the Ingress routes to model-serving pods without TLS"
            + (f" for host {hosts}" if hosts else ""),
            "add spec.tls with a certificate Secret listing every host of spec.rules",
            container=where,
        )
    if cfg.rate_limit_annotations and not any(a in annotations for a in cfg.rate_limit_annotations):
        yield Violation(
            "MW-TLS-003",
            "the Ingress routes to model-serving pods without a rate limit",
            f"add one of the annotations {', '.join(cfg.rate_limit_annotations)}",
            container=where,
        )


def check_service(
    service: Mapping[str, Any], where: str, cfg: TransportConfig
) -> Iterator[Violation]:
    spec = service.get("spec") or {}
    how = []
    if spec.get("type") in EXTERNAL_SERVICE_TYPES:
        how.append(f"type {spec.get('type')}")
    if spec.get("externalIPs"):
        how.append("externalIPs")
    if how and not cfg.allow_external_services:
        yield Violation(
            "MW-TLS-004",
            f"the Service exposes model-serving pods outside the cluster ({', '.join(how)}), "
            "past any TLS or rate-limit check",
            "use a ClusterIP Service behind an Ingress or a Gateway with TLS and a rate limit "
            "(or set transport.allowExternalServices in the policy)",
            container=where,
        )


def _parent_key(route_namespace: str, parent: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(group, kind, "namespace/name") of a parentRef; None for a malformed one."""
    if not parent.get("name"):
        return None
    group = str(parent.get("group") if parent.get("group") is not None else GATEWAY_GROUP)
    kind = str(parent.get("kind") or "Gateway")
    return group, kind, f"{parent.get('namespace') or route_namespace}/{parent['name']}"


def check_route(route: Mapping[str, Any], where: str, cfg: TransportConfig) -> Iterator[Violation]:
    """Routes to governed pods attach only to Gateways (or listeners) the policy names.

    modelward does not see Gateways, so which ones terminate TLS and rate-limit is the policy
    author's statement (``allowedGateways``). A parent that is a Service (GAMMA mesh routing)
    is in-cluster and not an exposure.
    """
    meta = route.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    for parent in (route.get("spec") or {}).get("parentRefs") or []:
        if not isinstance(parent, Mapping):
            continue
        key = _parent_key(namespace, parent)
        if key is not None and key[:2] == ("", "Service"):
            continue
        section = parent.get("sectionName")
        allowed = (
            key is not None
            and key[:2] == (GATEWAY_GROUP, "Gateway")
            and (
                key[2] in cfg.allowed_gateways
                or (bool(section) and f"{key[2]}/{section}" in cfg.allowed_gateways)
            )
        )
        if not allowed:
            name = key[2] if key else "<unnamed>"
            listener = f" listener {section}" if section else ""
            yield Violation(
                "MW-TLS-005",
                f"the {route.get('kind')} attaches to {name}{listener}, which the policy does "
                "not name as a Gateway that terminates TLS and rate-limits",
                "attach the route to a Gateway listed in transport.allowedGateways "
                "(namespace/name or namespace/name/listener)",
                container=where,
            )


def check_exposure(
    obj: Mapping[str, Any], backend: Backend, cfg: TransportConfig
) -> Iterator[Violation]:
    """The rules for one exposure object and one of its backends that a policy governs."""
    kind = obj.get("kind")
    if kind == "Ingress":
        yield from check_ingress(obj, backend.describe, cfg.ingress)
    elif kind == "Service":
        yield from check_service(obj, backend.describe, cfg)
    elif kind in ROUTE_KINDS:
        yield from check_route(obj, backend.describe, cfg)
