"""Integrity rules (MW-INT-*): the pod serves a declared model, verified before it starts.

A pod declares its model with annotations on the pod (template):

    modelward.io/model-volume: models            # the volume that holds the model
    modelward.io/model-path: llama-3.1-8b        # folder inside the volume (default: its root)
    modelward.io/model-signature: model.sig      # relative to the model folder (default)

The verifier is an init container per policy, appended after the pod's own init containers
(so after a downloader such as KServe's storage-initializer has written the model), running
``modelward verify-pod`` from the policy's verifier image with read-only mounts of the model
and of the trusted keys. It is Pod Security "restricted" compliant. Inline keys travel as pod
annotations projected into files by the Downward API; referenced keys come from a ConfigMap or
Secret in the pod's namespace. Injection is idempotent: a pod that already carries exactly the
verifier the policy asks for gets no patch.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from modelward.engine.decision import Remedy, Violation
from modelward.engine.exact import differs
from modelward.engine.facts import NamespaceFacts
from modelward.engine.policy import IntegrityConfig, TrustedSigner
from modelward.engine.rules.images import DIGEST, ImageReference
from modelward.engine.workloads import ContainerRef, Workload

MODEL_VOLUME = "modelward.io/model-volume"
MODEL_PATH = "modelward.io/model-path"
MODEL_SIGNATURE = "modelward.io/model-signature"
KEY_ANNOTATION_PREFIX = "keys.modelward.io/"
MODEL_MOUNT = "/modelward/model"
KEYS_MOUNT = "/modelward/keys"

VERIFIER_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
VERIFIER_RESOURCES = {
    "requests": {"cpu": "250m", "memory": "128Mi"},
    "limits": {"cpu": "2", "memory": "512Mi"},
}


@dataclass(frozen=True)
class ModelDeclaration:
    volume: str
    path: str
    signature: str

    @property
    def model_dir(self) -> str:
        return posixpath.join(MODEL_MOUNT, self.path) if self.path else MODEL_MOUNT

    @property
    def signature_path(self) -> str:
        return posixpath.join(self.model_dir, self.signature)


def _safe_relative(value: str) -> bool:
    parts = value.split("/")
    return not value.startswith("/") and ".." not in parts and "\\" not in value


def declared_model(w: Workload) -> ModelDeclaration | str:
    """The pod's model declaration, or why it has none."""
    volume = w.annotations.get(MODEL_VOLUME)
    if not volume:
        return f"declares no model (annotation {MODEL_VOLUME} is missing)"
    path = w.annotations.get(MODEL_PATH, "").strip("/")
    signature = w.annotations.get(MODEL_SIGNATURE, "model.sig")
    for name, value in ((MODEL_PATH, path), (MODEL_SIGNATURE, signature)):
        if not _safe_relative(value):
            return f"annotation {name}={value!r} must be a relative path without '..'"
    volumes = {v.get("name"): v for v in w.pod_spec.get("volumes") or [] if isinstance(v, Mapping)}
    if volume not in volumes:
        return f"declares model volume {volume!r}, but the pod has no such volume"
    return ModelDeclaration(volume, path, signature)


def key_annotation(cfg: IntegrityConfig, signer: TrustedSigner) -> str:
    suffix = cfg.container_name.removeprefix("modelward-verify-")
    return f"{KEY_ANNOTATION_PREFIX}{suffix}.{signer.name}"


def keys_volume(cfg: IntegrityConfig) -> dict[str, Any]:
    """A projected volume holding every trusted key or CA as ``<signer>.pem``."""
    inline = [
        {
            "path": f"{s.name}.pem",
            "fieldRef": {"fieldPath": f"metadata.annotations['{key_annotation(cfg, s)}']"},
        }
        for s in cfg.signers
        if s.pem is not None
    ]
    sources: list[dict[str, Any]] = [{"downwardAPI": {"items": inline}}] if inline else []
    for s in cfg.signers:
        if s.config_map is not None:
            name, key = s.config_map
            sources.append(
                {"configMap": {"name": name, "items": [{"key": key, "path": f"{s.name}.pem"}]}}
            )
        elif s.secret is not None:
            name, key = s.secret
            sources.append(
                {"secret": {"name": name, "items": [{"key": key, "path": f"{s.name}.pem"}]}}
            )
    return {
        "name": f"{cfg.container_name}-keys",
        "projected": {"sources": sources, "defaultMode": 0o444},
    }


def verifier_container(cfg: IntegrityConfig, model: ModelDeclaration) -> dict[str, Any]:
    """The init container that verifies (and scans) the model before the server starts."""
    args = ["verify-pod", "--model-path", model.model_dir, "--signature", model.signature_path]
    for s in cfg.signers:
        flag = "--public-key" if s.kind == "publicKey" else "--ca-cert"
        args += [flag, f"{KEYS_MOUNT}/{s.name}.pem"]
    args.append("--scan" if cfg.scan else "--no-scan")
    if cfg.allow_shards:
        args.append("--allow-shards")
    for path in cfg.allowed_ignore_paths:
        args += ["--allowed-ignore-path", path]
    args += ["--policy", cfg.policy_label, "--termination-log", "/dev/termination-log"]
    return {
        "name": cfg.container_name,
        "image": cfg.verifier_image,
        "args": args,
        "volumeMounts": [
            {"name": model.volume, "mountPath": MODEL_MOUNT, "readOnly": True},
            {"name": f"{cfg.container_name}-keys", "mountPath": KEYS_MOUNT, "readOnly": True},
        ],
        "securityContext": VERIFIER_SECURITY_CONTEXT,
        "resources": VERIFIER_RESOURCES,
        "terminationMessagePolicy": "File",
    }


def _matches(existing: Any, expected: Any) -> bool:
    """Exactly what modelward sets, at every depth: nothing changed, nothing added (a verifier
    with an added ``command`` is not the verifier) except the API server's defaults
    (``fieldRef.apiVersion``, ``imagePullPolicy``...; see ``engine.exact``)."""
    return differs(existing, expected, where="") is None


def _writers(w: Workload, volume: str) -> Iterator[tuple[ContainerRef, int]]:
    """Mounts of the model volume that are not read-only, in long-running containers."""
    for c in w.containers():
        long_running = c.list_name != "initContainers" or c.spec.get("restartPolicy") == "Always"
        if not long_running:
            continue
        for index, mount in enumerate(c.spec.get("volumeMounts") or []):
            if (
                isinstance(mount, Mapping)
                and mount.get("name") == volume
                and mount.get("readOnly") is not True
            ):
                yield c, index


def check_integrity(w: Workload, ns: NamespaceFacts, cfg: IntegrityConfig) -> Iterator[Violation]:
    model = declared_model(w)
    if isinstance(model, str):
        if cfg.require_signature:
            yield Violation(
                "MW-INT-001",
                model,
                f"annotate the pod template with {MODEL_VOLUME}: <volume holding the model> "
                f"(and {MODEL_PATH}, {MODEL_SIGNATURE} if needed)",
            )
        return
    volume = next(
        v
        for v in w.pod_spec.get("volumes") or []
        if isinstance(v, Mapping) and v.get("name") == model.volume
    )
    image = volume.get("image")
    if isinstance(image, Mapping):
        ref = ImageReference.parse(str(image.get("reference") or ""))
        if ref.digest is None or not DIGEST.match(ref.digest):
            yield Violation(
                "MW-INT-003",
                f"model image {image.get('reference')} is not referenced by digest",
                f"use {ref.name}@sha256:<digest> so the model bytes cannot change under the tag",
                container=f'image volume "{model.volume}"',
            )
    if cfg.require_read_only:
        for c, index in _writers(w, model.volume):
            yield Violation(
                "MW-INT-002",
                f'mounts the model volume "{model.volume}" writable',
                "set readOnly: true on the mount (a serving container must not change its model)",
                container=c.describe,
                remedies=(Remedy((*c.path, "volumeMounts", index, "readOnly"), True),),
            )
    if cfg.require_signature:
        yield from _verifier(w, cfg, model)


def _verifier(w: Workload, cfg: IntegrityConfig, model: ModelDeclaration) -> Iterator[Violation]:
    expected = verifier_container(cfg, model)
    volume = keys_volume(cfg)
    init = [c for c in w.pod_spec.get("initContainers") or [] if isinstance(c, Mapping)]
    index = next((i for i, c in enumerate(init) if c.get("name") == cfg.container_name), None)
    volumes = [v for v in w.pod_spec.get("volumes") or [] if isinstance(v, Mapping)]
    volume_index = next((i for i, v in enumerate(volumes) if v.get("name") == volume["name"]), None)
    remedies: list[Remedy] = [
        Remedy(("annotations", key_annotation(cfg, s)), s.pem, scope="metadata")
        for s in cfg.signers
        if s.pem is not None and w.annotations.get(key_annotation(cfg, s)) != s.pem
    ]
    if volume_index is None:
        remedies.append(Remedy(("volumes",), volume, append=True))
    elif not _matches(volumes[volume_index], volume):
        remedies.append(Remedy(("volumes", volume_index), volume))
    fix = (
        f"set the integrity section to Patch mode so that modelward injects its verifier, or "
        f"add the init container {cfg.container_name} as docs/integrity.md shows"
    )
    if index is None:
        yield Violation(
            "MW-INT-004",
            "the model is not verified before serving (no modelward verifier init container)",
            fix,
            remedies=(*remedies, Remedy(("initContainers",), expected, append=True)),
        )
        return
    if not _matches(init[index], expected):
        remedies.append(Remedy(("initContainers", index), expected))
    later_writers = [
        c.get("name")
        for c in init[index + 1 :]
        if any(
            isinstance(m, Mapping)
            and m.get("name") == model.volume
            and m.get("readOnly") is not True
            for m in c.get("volumeMounts") or []
        )
    ]
    if later_writers:
        yield Violation(
            "MW-INT-004",
            f"init container {later_writers[0]} can change the model after it was verified",
            f"move {cfg.container_name} after every init container that writes the model",
        )
    if remedies:
        yield Violation(
            "MW-INT-004",
            f"the verifier {cfg.container_name} differs from what the policy requires",
            fix,
            remedies=tuple(remedies),
        )
