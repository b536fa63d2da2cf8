"""Integrity rules (MW-INT-*): the pod serves a declared model, verified before it starts.

A pod declares its model with annotations on the pod (template):

    modelward.io/model-volume: models            # the volume that holds the model
    modelward.io/model-path: llama-3.1-8b        # folder inside the volume (default: its root)
    modelward.io/model-signature: model.sig      # relative to the model folder (default)

The verifier is an init container per policy, appended after the pod's own init containers
(so after a downloader such as KServe's storage-initializer has written the model), running
``modelward verify-pod`` from the policy's verifier image with read-only mounts of the model
and of the trusted keys. It is Pod Security "restricted" compliant. Inline keys, and the keys a
ClusterModelPolicy references in modelward's namespace (read by the operator), travel as pod
annotations projected into files by the Downward API; a ModelPolicy's referenced keys come from
a ConfigMap or Secret in its (the pod's) namespace. Injection is idempotent: a pod that already
carries exactly the verifier the policy asks for gets no patch.

Volumes are compared by the storage behind them, not by their names: two volumes naming one
PersistentVolumeClaim (or one host path, CSI volume, image) are the same model, so a second,
writable name for the verified model is caught, and a second model-like volume the verifier
never saw is too (MW-INT-005). Once admitted, a pod's model declaration, key annotations and
verifier cannot change (MW-INT-006, judged on UPDATE with the old object).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from modelward.engine.decision import Remedy, Violation
from modelward.engine.exact import differs
from modelward.engine.facts import NamespaceFacts
from modelward.engine.policy import VERIFIER_PREFIX, IntegrityConfig, TrustedSigner
from modelward.engine.rules.images import DIGEST, ImageReference
from modelward.engine.workloads import ContainerRef, Workload

MODEL_VOLUME = "modelward.io/model-volume"
MODEL_PATH = "modelward.io/model-path"
MODEL_SIGNATURE = "modelward.io/model-signature"
UNVERIFIED_VOLUMES = "modelward.io/unverified-volumes"
MODEL_ANNOTATION_PREFIX = "modelward.io/model-"
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
    """``keys.modelward.io/<80 bits of the verifier's name>.<signer>``: 61 characters at most,
    within the 63 an annotation name may have, and distinct per policy and signer."""
    suffix = cfg.container_name.removeprefix(VERIFIER_PREFIX)[:20]
    return f"{KEY_ANNOTATION_PREFIX}{suffix}.{signer.name}"


def keys_volume(cfg: IntegrityConfig) -> dict[str, Any]:
    """A projected volume holding every trusted key or CA as ``<signer>.pem``.

    Inline PEMs, and those the operator read for a cluster policy, come from the pod's own
    annotations (Downward API); only a ModelPolicy's references are projected from its
    namespace.
    """
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
        if s.pem is not None:
            continue
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
    if cfg.scan:
        # "--flag=value": a value is never read as an option of its own
        args += [f"--profile={name}" for name in cfg.scan_profiles]
        args += [f"--allow-global={name}" for name in cfg.allowed_globals]
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


#: Volume types that can hold a model: storage that outlives the pod or comes from outside it.
MODEL_LIKE_TYPES = (
    "persistentVolumeClaim",
    "ephemeral",
    "image",
    "hostPath",
    "csi",
    "nfs",
    "iscsi",
    "cephfs",
    "rbd",
    "glusterfs",
    "azureFile",
    "azureDisk",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "cinder",
    "fc",
    "flexVolume",
    "portworxVolume",
    "quobyte",
    "scaleIO",
    "storageos",
    "vsphereVolume",
    "photonPersistentDisk",
    "flocker",
    "gitRepo",
)
#: Source fields that say how a volume is mounted, not which storage it is.
_MOUNT_OPTIONS = ("readOnly", "fsType")


@dataclass(frozen=True)
class Storage:
    """The storage behind a volume: its type and what identifies it (not the volume's name).

    Two volumes of one pod naming the same claim, host path, CSI volume or image are the
    same storage; emptyDir, ephemeral, projected and downwardAPI volumes are private to their
    volume, so their identity is the volume name.
    """

    type: str
    identity: str
    read_only: bool = False

    def overlaps(self, other: Storage) -> bool:
        if self.type != other.type:
            return False
        if self.type == "hostPath":
            a, b = self.identity.rstrip("/") + "/", other.identity.rstrip("/") + "/"
            return a.startswith(b) or b.startswith(a)
        return self.identity == other.identity

    def describe(self) -> str:
        return f"{self.type} {self.identity}"


def storage_of(volume: Mapping[str, Any]) -> Storage:
    name = str(volume.get("name", ""))
    for type_, source in volume.items():
        if type_ == "name" or not isinstance(source, Mapping):
            continue
        read_only = source.get("readOnly") is True
        if type_ == "persistentVolumeClaim":
            return Storage(type_, str(source.get("claimName", "")), read_only)
        if type_ == "hostPath":
            return Storage(type_, posixpath.normpath(str(source.get("path") or "/")))
        if type_ == "image":
            return Storage(type_, str(source.get("reference", "")), True)
        if type_ == "configMap":
            return Storage(type_, str(source.get("name", "")), True)
        if type_ == "secret":
            return Storage(type_, str(source.get("secretName", "")), True)
        if type_ in ("emptyDir", "ephemeral", "projected", "downwardAPI"):
            return Storage(type_, name, type_ in ("projected", "downwardAPI"))
        identity = {k: v for k, v in source.items() if k not in _MOUNT_OPTIONS}
        return Storage(type_, json.dumps(identity, sort_keys=True, default=str), read_only)
    return Storage("emptyDir", name)  # no source given: the API server defaults to emptyDir


def _volumes(w: Workload) -> dict[str, Mapping[str, Any]]:
    return {
        str(v.get("name")): v for v in w.pod_spec.get("volumes") or [] if isinstance(v, Mapping)
    }


def _long_running(c: ContainerRef) -> bool:
    return c.list_name != "initContainers" or c.spec.get("restartPolicy") == "Always"


def _mounts(c: ContainerRef) -> Iterator[tuple[int, Mapping[str, Any]]]:
    for index, mount in enumerate(c.spec.get("volumeMounts") or []):
        if isinstance(mount, Mapping):
            yield index, mount


def _writes(mount: Mapping[str, Any], storage: Storage) -> bool:
    return mount.get("readOnly") is not True and not storage.read_only


def _writers(w: Workload, model: Storage) -> Iterator[tuple[ContainerRef, int, str]]:
    """Writable mounts of the model's storage, under any volume name, in long-running
    containers."""
    volumes = _volumes(w)
    for c in w.containers():
        if not _long_running(c):
            continue
        for index, mount in _mounts(c):
            volume = volumes.get(str(mount.get("name")))
            if volume is None:
                continue
            storage = storage_of(volume)
            if storage.overlaps(model) and _writes(mount, storage):
                yield c, index, str(mount.get("name"))


def _written_by_init(w: Workload) -> set[str]:
    """Volumes an init container can write: an emptyDir filled this way may hold a downloaded
    model (the verifier mounts read-only, so it never counts)."""
    written = set()
    for c in w.containers():
        if c.is_init:
            written |= {str(m.get("name")) for _, m in _mounts(c) if m.get("readOnly") is not True}
    return written


def model_like_mounts(w: Workload) -> Iterator[tuple[ContainerRef, int, str, Storage]]:
    """Mounts, in long-running containers, of volumes that can hold a model: persistent,
    external or image storage, or an emptyDir an init container writes."""
    volumes = _volumes(w)
    filled = _written_by_init(w)
    for c in w.containers():
        if not _long_running(c):
            continue
        for index, mount in _mounts(c):
            name = str(mount.get("name"))
            volume = volumes.get(name)
            if volume is None:
                continue
            storage = storage_of(volume)
            if storage.type in MODEL_LIKE_TYPES or (storage.type == "emptyDir" and name in filled):
                yield c, index, name, storage


def declared_unverified(w: Workload) -> set[str]:
    raw = w.annotations.get(UNVERIFIED_VOLUMES, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def _coverage(w: Workload, model: ModelDeclaration, storage: Storage) -> Iterator[Violation]:
    """MW-INT-005: a long-running container serves only from the verified storage, or from a
    volume the pod declares as unverified and mounts read-only."""
    declared = declared_unverified(w)
    seen: set[tuple[str, str]] = set()
    for c, index, name, other in model_like_mounts(w):
        if other.overlaps(storage) or (c.describe, name) in seen:
            continue
        seen.add((c.describe, name))
        if name not in declared:
            yield Violation(
                "MW-INT-005",
                f'mounts volume "{name}" ({other.describe()}), which is not the verified '
                f'model "{model.volume}"',
                f"serve the model from {model.volume}, or list {name} in the pod annotation "
                f"{UNVERIFIED_VOLUMES} and mount it readOnly",
                container=c.describe,
            )
        elif _writes(c.spec["volumeMounts"][index], other):
            yield Violation(
                "MW-INT-005",
                f'mounts the unverified volume "{name}" writable',
                "set readOnly: true on the mount (a volume the verifier does not check may only "
                "be read)",
                container=c.describe,
                remedies=(Remedy((*c.path, "volumeMounts", index, "readOnly"), True),),
            )


def is_model_pod(w: Workload) -> bool:
    """A pod is a model pod by what it is: it declares a model or mounts model-like storage."""
    return MODEL_VOLUME in w.annotations or next(model_like_mounts(w), None) is not None


def check_integrity(w: Workload, ns: NamespaceFacts, cfg: IntegrityConfig) -> Iterator[Violation]:
    if cfg.model_pods == "ModelVolumes" and not is_model_pod(w):
        return
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
    volume = _volumes(w)[model.volume]
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
    storage = storage_of(volume)
    if cfg.require_read_only:
        for c, index, name in _writers(w, storage):
            what = (
                f'the model volume "{name}"'
                if name == model.volume
                else f'volume "{name}", the model\'s storage ({storage.describe()}),'
            )
            yield Violation(
                "MW-INT-002",
                f"mounts {what} writable",
                "set readOnly: true on the mount (a serving container must not change its model)",
                container=c.describe,
                remedies=(Remedy((*c.path, "volumeMounts", index, "readOnly"), True),),
            )
    if cfg.require_signature:
        if cfg.require_verified_volumes:
            yield from _coverage(w, model, storage)
        yield from _verifier(w, cfg, model, storage)


def _verifier(
    w: Workload, cfg: IntegrityConfig, model: ModelDeclaration, storage: Storage
) -> Iterator[Violation]:
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
    by_name = _volumes(w)
    later_writers = [
        c.get("name")
        for c in init[index + 1 :]
        if any(
            isinstance(m, Mapping)
            and m.get("name") in by_name
            and storage_of(by_name[str(m.get("name"))]).overlaps(storage)
            and _writes(m, storage_of(by_name[str(m.get("name"))]))
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


def _protected_annotations(w: Workload) -> dict[str, str]:
    return {
        k: v
        for k, v in w.annotations.items()
        if k.startswith((MODEL_ANNOTATION_PREFIX, KEY_ANNOTATION_PREFIX)) or k == UNVERIFIED_VOLUMES
    }


def _verifiers(w: Workload) -> dict[str, Mapping[str, Any]]:
    return {
        c.name: c.spec for c in w.containers() if c.is_init and c.name.startswith(VERIFIER_PREFIX)
    }


def check_integrity_update(old: Workload, new: Workload) -> Iterator[Violation]:
    """MW-INT-006: a pod's model declaration, trusted keys and verifiers, once admitted, do
    not change.

    The API server lets a pod's annotations and container images change after creation, and
    the Downward API carries annotation changes into the verifier's key files: without this,
    a pod held back (by a scheduling gate) could swap the key or the verifier's image before
    its model is checked. Nothing here can be patched: the old values are the right ones.
    """
    before, after = _protected_annotations(old), _protected_annotations(new)
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) != after.get(key):
            change = "added" if key not in before else "removed" if key not in after else "changed"
            yield Violation(
                "MW-INT-006",
                f"annotation {key} is {change}; the model declaration and trusted keys are "
                "fixed once the pod is admitted",
                "recreate the pod (or roll out its workload) to change the model or its keys",
            )
    old_verifiers, new_verifiers = _verifiers(old), _verifiers(new)
    for name, spec in sorted(old_verifiers.items()):
        if new_verifiers.get(name) != spec:
            yield Violation(
                "MW-INT-006",
                "the verifier is changed (image, arguments or mounts); it is fixed once the "
                "pod is admitted",
                "recreate the pod (or roll out its workload) to change its verifier",
                container=f'init container "{name}"',
            )
