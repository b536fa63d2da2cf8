"""Transport rules (MW-TLS-*): TLS on every endpoint of a model-serving pod, and on the
Ingresses that route to it.

Evidence of TLS for a pod is any of: mesh sidecar injection (Istio, incl. ambient mode, or
Linkerd) decided by pod annotation/label or namespace label/annotation, or a Secret volume whose
name matches the policy's TLS secret names, mounted in every container that declares ports.
modelward never reads Secrets (least privilege), so it recognises TLS secrets by name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from modelward.engine.decision import Violation
from modelward.engine.facts import NamespaceFacts
from modelward.engine.policy import IngressConfig, TransportConfig
from modelward.engine.selectors import matches_any_glob
from modelward.engine.workloads import Workload


def _istio(w: Workload, ns: NamespaceFacts) -> bool:
    pod_choice = w.annotations.get("sidecar.istio.io/inject") or w.labels.get(
        "sidecar.istio.io/inject"
    )
    if pod_choice == "false":
        return False
    if pod_choice == "true":
        return True
    return (
        ns.labels.get("istio-injection") == "enabled"
        or "istio.io/rev" in ns.labels
        or ns.labels.get("istio.io/dataplane-mode") == "ambient"
    )


def _linkerd(w: Workload, ns: NamespaceFacts) -> bool:
    pod_choice = w.annotations.get("linkerd.io/inject")
    if pod_choice == "disabled":
        return False
    if pod_choice in ("enabled", "ingress"):
        return True
    return ns.annotations.get("linkerd.io/inject") == "enabled"


def mesh_protected(w: Workload, ns: NamespaceFacts, meshes: tuple[str, ...]) -> str | None:
    """The mesh that gives this pod mTLS, if any."""
    if "istio" in meshes and _istio(w, ns):
        return "istio"
    if "linkerd" in meshes and _linkerd(w, ns):
        return "linkerd"
    return None


def _tls_volumes(w: Workload, patterns: tuple[str, ...]) -> set[str]:
    names: set[str] = set()
    for volume in w.pod_spec.get("volumes") or []:
        if not isinstance(volume, Mapping):
            continue
        secrets: list[Any] = []
        if isinstance(volume.get("secret"), Mapping):
            secrets.append(volume["secret"].get("secretName"))
        projected = volume.get("projected")
        if isinstance(projected, Mapping):
            for source in projected.get("sources") or []:
                if isinstance(source, Mapping) and isinstance(source.get("secret"), Mapping):
                    secrets.append(source["secret"].get("name"))
        csi = volume.get("csi")
        cert_manager = isinstance(csi, Mapping) and csi.get("driver") == "csi.cert-manager.io"
        named_tls = any(isinstance(s, str) and matches_any_glob(s, patterns) for s in secrets)
        if named_tls or cert_manager:
            names.add(str(volume.get("name")))
    return names


def check_transport(w: Workload, ns: NamespaceFacts, cfg: TransportConfig) -> Iterator[Violation]:
    if not cfg.require_tls or mesh_protected(w, ns, cfg.meshes):
        return
    tls_volumes = _tls_volumes(w, cfg.tls_secret_names)
    serving = list(w.serving_containers())
    with_ports = [c for c in serving if c.spec.get("ports")] or serving[:1]
    meshes = " or ".join(cfg.meshes) or "a service mesh"
    for c in with_ports:
        mounts = {m.get("name") for m in c.spec.get("volumeMounts") or [] if isinstance(m, Mapping)}
        if not tls_volumes & mounts:
            yield Violation(
                "MW-TLS-001",
                "serves without TLS: no mesh injection and no TLS secret mounted",
                f"enable {meshes} injection for the pod or namespace, or mount a TLS Secret "
                f"named like {', '.join(cfg.tls_secret_names)} (or a cert-manager CSI volume)",
                container=c.describe,
            )


def ingress_backends(ingress: Mapping[str, Any]) -> list[str]:
    """Names of the Services an Ingress routes to."""
    spec = ingress.get("spec") or {}
    backends = []
    default = ((spec.get("defaultBackend") or {}).get("service") or {}).get("name")
    if default:
        backends.append(str(default))
    for rule in spec.get("rules") or []:
        for path in ((rule or {}).get("http") or {}).get("paths") or []:
            name = (((path or {}).get("backend") or {}).get("service") or {}).get("name")
            if name:
                backends.append(str(name))
    return sorted(set(backends))


def check_ingress(
    ingress: Mapping[str, Any], service: str, cfg: IngressConfig
) -> Iterator[Violation]:
    spec = ingress.get("spec") or {}
    annotations = (ingress.get("metadata") or {}).get("annotations") or {}
    where = f'backend service "{service}"'
    if cfg.require_tls and not spec.get("tls"):
        yield Violation(
            "MW-TLS-002",
            "the Ingress routes to model-serving pods without TLS",
            "add spec.tls with a certificate Secret for every host",
            container=where,
        )
    if cfg.rate_limit_annotations and not any(a in annotations for a in cfg.rate_limit_annotations):
        yield Violation(
            "MW-TLS-003",
            "the Ingress routes to model-serving pods without a rate limit",
            f"add one of the annotations {', '.join(cfg.rate_limit_annotations)}",
            container=where,
        )
