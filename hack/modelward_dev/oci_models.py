"""Models as OCI artifacts, the way ORAS pushes them, with a model signature attached.

``oras push registry/repo:tag file1 file2`` writes each file, as it is, as one layer titled
with its name (``org.opencontainers.image.title``); the layer digest is then the file's
SHA-256, the very digest an OpenSSF Model Signing signature (``model_signing``, ``files``
serialization) lists for it. ``attach_model_signature`` attaches that signature to the
artifact as an OCI referrer (artifactType: Sigstore bundle; annotation
``dev.sigstore.bundle.predicateType: https://model_signing/signature/v1.0``), as cosign attaches
its bundles, and keeps the referrers fallback tag (``sha256-<hex>``) for registries without
the referrers API (Debian's distribution registry among them), as go-containerregistry does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from modelward_dev.registry import RegistryClient, RegistryError, manifest_json

__all__ = ["attach_model_signature", "push_oras_model"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
#: What ORAS labels a file layer by default (the bytes are the file, not a tar).
ORAS_FILE_LAYER = "application/vnd.oci.image.layer.v1.tar"
MODEL_ARTIFACT_TYPE = "application/vnd.modelward.model.v1"
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
MODEL_PREDICATE = "https://model_signing/signature/v1.0"


def _empty_config(client: RegistryClient, repository: str) -> dict[str, object]:
    digest = client.push_blob(repository, b"{}")
    return {"mediaType": EMPTY_CONFIG, "digest": digest, "size": 2}


def push_oras_model(
    client: RegistryClient,
    repository: str,
    tag: str,
    files: Mapping[str, bytes],
) -> str:
    """Push ``files`` (name -> bytes) as an ORAS-style artifact; returns its manifest digest."""
    layers = []
    for name, data in sorted(files.items()):
        digest = client.push_blob(repository, data)
        layers.append(
            {
                "mediaType": ORAS_FILE_LAYER,
                "digest": digest,
                "size": len(data),
                "annotations": {"org.opencontainers.image.title": name},
            }
        )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": MODEL_ARTIFACT_TYPE,
        "config": _empty_config(client, repository),
        "layers": layers,
    }
    return client.push_manifest(repository, tag, manifest_json(manifest), OCI_MANIFEST)


def model_files(directory: Path) -> dict[str, bytes]:
    """Every regular file under ``directory``, by its relative POSIX path."""
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def attach_model_signature(
    client: RegistryClient, repository: str, subject: str, bundle: bytes
) -> str:
    """Attach a model signature (Sigstore bundle JSON) to ``subject``; returns the referrer's
    manifest digest. The fallback tag index is updated as well."""
    status, subject_raw = client.manifest(repository, subject, OCI_MANIFEST)
    if status != 200:
        raise RegistryError(f"{repository}@{subject} does not exist (HTTP {status})")
    layer_digest = client.push_blob(repository, bundle)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_TYPE,
        "config": _empty_config(client, repository),
        "layers": [{"mediaType": BUNDLE_TYPE, "digest": layer_digest, "size": len(bundle)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(subject_raw)},
        "annotations": {"dev.sigstore.bundle.predicateType": MODEL_PREDICATE},
    }
    raw = manifest_json(manifest)
    digest = client.push_manifest(repository, digest_tag(raw), raw, OCI_MANIFEST)
    fallback = "sha256-" + subject.split(":", 1)[1]
    status, existing = client.manifest(repository, fallback, OCI_INDEX)
    index = (
        json.loads(existing)
        if status == 200
        else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    )
    index["manifests"].append(
        {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(raw), "artifactType": BUNDLE_TYPE}
    )
    client.push_manifest(repository, fallback, manifest_json(index), OCI_INDEX)
    return digest


def digest_tag(raw: bytes) -> str:
    """A manifest pushed by digest (no tag of its own, as referrers are)."""
    import hashlib

    return "sha256:" + hashlib.sha256(raw).hexdigest()
