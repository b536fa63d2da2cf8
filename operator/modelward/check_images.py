"""``modelward check --registry-lookups``: the image rules that read registries, offline.

Off by default (a CI job should not depend on a registry unless it asks to). With it, every
workload's images are looked up once, with the same client, rules and bounds as admission but
a CI-sized deadline, and each image gets one line saying what was found or why not.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelward.engine import Policy, StaticFacts, Workload
from modelward.engine.facts import ImageFacts, ImageLookups
from modelward.engine.image_trust import ImageTrust
from modelward.engine.rules.images import image_references
from modelward.errors import ManifestError
from modelward.registry.auth import CredentialStore, DockerConfigError, parse_docker_config
from modelward.registry.client import RegistryClient, RegistrySettings
from modelward.registry.lookups import ImageInspector, LookupSettings, requests_for


@dataclass(frozen=True)
class LookupOptions:
    deadline: float = 30.0
    platform: str = "linux/amd64"
    ca_bundles: tuple[str, ...] = ()
    registry_config: Path | None = None


@dataclass
class CheckLookups:
    """Look-ups made by ``check``, keyed by workload position, and every image's facts."""

    options: LookupOptions
    by_workload: dict[int, ImageLookups] = field(default_factory=dict)
    images: dict[str, ImageFacts] = field(default_factory=dict)

    def gather(
        self,
        workloads: Sequence[tuple[int, Workload]],
        policies: Sequence[Policy],
        facts: StaticFacts,
    ) -> None:
        credentials = _credentials(self.options.registry_config)
        wanted = []
        for position, workload in workloads:
            namespace = facts.namespace(workload.namespace)
            selected = [p for p in policies if p.applies_to(namespace, workload.labels)]
            requests = requests_for(image_references(workload), selected)
            if requests:
                wanted.append((position, requests))
        if wanted:
            asyncio.run(self._gather(wanted, credentials))

    async def _gather(self, wanted: list[tuple[int, Any]], credentials: CredentialStore) -> None:
        settings = RegistrySettings(
            platform=self.options.platform, ca_bundles=self.options.ca_bundles
        )
        async with RegistryClient(settings=settings) as client:
            inspector = ImageInspector(
                client=client, settings=LookupSettings(deadline=self.options.deadline)
            )
            for position, requests in wanted:
                looked = await inspector.lookups(requests, credentials=credentials)
                self.by_workload[position] = looked
                self.images.update(looked.images)

    def for_workload(self, position: int) -> ImageLookups | None:
        return self.by_workload.get(position)

    def render_text(self) -> list[str]:
        return [describe(f) for f in sorted(self.images.values(), key=lambda f: f.reference)]

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {
                "reference": f.reference,
                "digest": f.digest,
                "error": f.error,
                "user": f.user,
                "created": _date(f.created),
                "compressedBytes": f.compressed_size,
                "layers": f.layer_count,
                "baseName": f.base_name,
                "forbiddenPaths": ["/" + p for p in f.forbidden_paths or ()],
                "contentsError": f.contents_error,
                "trust": None
                if f.trust is None
                else {
                    "error": f.trust.error,
                    "signatures": f.trust.signatures,
                    "trustedSigners": len(f.trust.signed_by),
                    "problems": list(f.trust.signature_problems),
                    "reports": [
                        {"source": r.source, "findings": len(r.findings), "where": r.where}
                        for r in f.trust.reports
                    ],
                    "model": None
                    if f.trust.model is None
                    else {
                        "verified": bool(f.trust.model.verified_by),
                        "signatures": f.trust.model.signatures,
                        "deferred": f.trust.model.deferred,
                        "problems": list(f.trust.model.problems),
                    },
                },
            }
            for f in sorted(self.images.values(), key=lambda f: f.reference)
        ]


def describe(facts: ImageFacts) -> str:
    """One line per image: what the registry said, or why it could not be asked."""
    if facts.error is not None:
        return f"IMAGE {facts.reference}: look-up failed: {facts.error}"
    parts = [
        f"user={facts.user or 'root (unset)'}",
        f"size={(facts.compressed_size or 0) / (1 << 20):.1f}MiB",
        f"layers={facts.layer_count}",
        f"created={_date(facts.created) or 'unknown'}",
        f"base={facts.base_name or 'undeclared'}",
    ]
    if facts.forbidden_paths is not None:
        found = ",".join("/" + p for p in facts.forbidden_paths) or "none"
        parts.append(f"forbidden={found}")
    elif facts.contents_error:
        parts.append(f"contents=unknown ({facts.contents_error})")
    if facts.trust is not None:
        parts.append(_trust(facts.trust))
    return f"IMAGE {facts.reference} -> {facts.digest} " + " ".join(parts)


def _trust(trust: ImageTrust) -> str:
    """Signatures, reports and the model check, as the trust rules will read them."""
    if trust.error is not None:
        return f"trust=unknown ({trust.error})"
    parts = [
        f"signatures={trust.signatures} (by {len(trust.signed_by)} trusted signer(s))",
        f"reports={len(trust.reports)}",
    ]
    model = trust.model
    if model is not None:
        state = (
            "verified"
            if model.verified_by
            else ("unsigned" if not model.signatures else "rejected")
        )
        if model.verified_by and model.deferred:
            state = f"signature-verified, files left to the in-pod verifier ({model.deferred})"
        parts.append(f"model={state}")
    return " ".join(parts)


def _date(created: float | None) -> str | None:
    if created is None:
        return None
    return datetime.datetime.fromtimestamp(created, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _credentials(path: Path | None) -> CredentialStore:
    if path is None:
        return CredentialStore()
    try:
        data = path.read_bytes()
        return CredentialStore((parse_docker_config(data, source=f"--registry-config {path}"),))
    except OSError as error:
        raise ManifestError(
            f"--registry-config {path} cannot be read ({error.strerror})",
            fix="pass a docker config.json with the registry's credentials",
        ) from None
    except DockerConfigError as error:
        raise ManifestError(str(error), fix="pass a valid docker config.json") from None
