"""Image trust rules (MW-IMG-020..023): signatures, vulnerability gates, OCI models.

They read :attr:`ImageFacts.trust <modelward.engine.facts.ImageFacts.trust>`, gathered before
evaluation by ``modelward.registry.trust`` (registry look-ups and signature checks). A failed
registry look-up is MW-IMG-010's (``onLookupFailure``); when only the trust evidence could not
be fetched, these rules report the image as unverifiable, never as compliant, with the same
``onLookupFailure`` choice. Without look-ups at all (``modelward check`` without
``--registry-lookups``) they are not evaluated, like the other look-up rules.

Which images each rule covers:

- MW-IMG-020 (signature): every container image and image volume.
- MW-IMG-021/022 (vulnerabilities): container images. Image volumes and modelcars hold model
  weights, which scanners do not report on; a missing report there would only be noise.
- MW-IMG-023 (model signature): image volumes, and containers named in
  ``models.modelcarContainers`` (KServe's modelcar).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from modelward.engine.decision import Violation
from modelward.engine.facts import ImageLookups
from modelward.engine.image_trust import (
    SOURCE_ATTESTATION,
    ImageTrust,
    Vulnerability,
    severity_rank,
)
from modelward.engine.policy import ImagesConfig, VulnerabilitiesConfig
from modelward.engine.rules.images import DIGEST, ImageReference
from modelward.engine.workloads import Workload

#: Findings listed in a message; the rest are counted.
LISTED_FINDINGS = 5


@dataclass(frozen=True)
class TrustedImage:
    """One image the trust rules look at: where it is used, its reference, what it is."""

    where: str
    reference: str
    is_container: bool
    is_model: bool


def trust_images(w: Workload, cfg: ImagesConfig) -> Iterator[TrustedImage]:
    """Every image a trust rule covers (containers, image volumes), in pod order."""
    modelcars = cfg.models.modelcar_containers if cfg.models else ()
    for c in w.containers():
        image = str(c.spec.get("image") or "")
        if image:
            yield TrustedImage(c.describe, image, True, c.name in modelcars)
    for volume in w.pod_spec.get("volumes") or []:
        if isinstance(volume, Mapping) and isinstance(volume.get("image"), Mapping):
            reference = str(volume["image"].get("reference") or "")
            if reference:
                yield TrustedImage(f'image volume "{volume.get("name")}"', reference, False, True)


def _names(signers: tuple[object, ...]) -> str:
    return ", ".join(str(getattr(s, "name", s)) for s in signers)


def _unknown(
    rule_id: str, image: TrustedImage, facts: ImageTrust | None, what: str, cfg: ImagesConfig
) -> Violation:
    reason = facts.error if facts is not None and facts.error else "it was not looked up"
    return Violation(
        rule_id,
        f"{what} of image {image.reference} could not be verified: {reason}",
        "make the registry reachable from modelward (credentials in imagePullSecrets, CA "
        "bundle), then retry; see docs/images.md, failure modes",
        container=image.where,
        advisory=cfg.on_lookup_failure == "Warn",
    )


def _when(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def check_signature(
    image: TrustedImage, facts: ImageTrust, cfg: ImagesConfig
) -> Iterator[Violation]:
    """MW-IMG-020: one of the policy's signers signed exactly this digest."""
    assert cfg.signatures is not None
    if facts.signed_by & cfg.signatures.signer_ids:
        return
    found = (
        f"; {facts.signatures} signature(s) found, none valid for this policy: "
        + "; ".join(facts.signature_problems[:3])
        if facts.signatures
        else "; it has no signature (.sig tag or Sigstore bundle referrer)"
    )
    name = ImageReference.parse(image.reference).name
    yield Violation(
        "MW-IMG-020",
        f"image {image.reference} ({facts.digest}) is not signed by a trusted signer{found}",
        f"sign the digest with one of the trusted signers ({_names(cfg.signatures.signers)}): "
        f"cosign sign --key <key> {name}@{facts.digest}",
        container=image.where,
    )


def _ignored(v: Vulnerability, cfg: VulnerabilitiesConfig, now: float) -> bool | float:
    """True if ignored now; the expiry (seconds) if an ignore entry expired; else False."""
    expired: float | bool = False
    for entry in cfg.ignore:
        if entry.id == v.id:
            if now < entry.expires:
                return True
            expired = entry.expires
    return expired


def check_vulnerabilities(
    image: TrustedImage, facts: ImageTrust, cfg: VulnerabilitiesConfig, now: float
) -> Iterator[Violation]:
    """MW-IMG-022 (a usable report exists) and MW-IMG-021 (nothing above maxSeverity)."""
    attestors = cfg.attestor_ids
    usable = [
        r
        for r in facts.reports
        if r.source in cfg.sources and (r.source != SOURCE_ATTESTATION or r.verified_by & attestors)
    ]
    if not usable:
        if cfg.on_missing_report == "Allow":
            return
        unused = len(facts.reports)
        yield Violation(
            "MW-IMG-022",
            f"image {image.reference} ({facts.digest}) has no vulnerability report from "
            f"{' or '.join(cfg.sources)}"
            + (f" ({unused} report(s) not used: untrusted or other source)" if unused else ""),
            "scan the image and attach the report: cosign attest --type vuln --key <key> "
            "--predicate <scan.json> <image@digest>, or let the Trivy Operator scan it",
            container=image.where,
            advisory=cfg.on_missing_report == "Warn",
        )
        return
    limit = -1 if cfg.max_severity == "NONE" else severity_rank(cfg.max_severity)
    over: dict[str, tuple[Vulnerability, float | bool]] = {}
    for report in usable:
        for v in report.findings:
            if severity_rank(v.severity) <= limit or v.id in over:
                continue
            ignored = _ignored(v, cfg, now)
            if ignored is not True:
                over[v.id] = (v, ignored)
    if not over:
        return
    worst = sorted(over.values(), key=lambda item: (-severity_rank(item[0].severity), item[0].id))
    listed = ", ".join(
        f"{v.id} ({v.severity}{f', {v.package}' if v.package else ''}"
        + (f"; ignore entry expired {_when(float(expired))}" if expired is not False else "")
        + ")"
        for v, expired in worst[:LISTED_FINDINGS]
    )
    more = f" and {len(worst) - LISTED_FINDINGS} more" if len(worst) > LISTED_FINDINGS else ""
    yield Violation(
        "MW-IMG-021",
        f"image {image.reference} has vulnerabilities above {cfg.max_severity}: {listed}{more}",
        "rebuild the image on patched packages, or add a time-limited entry to "
        "vulnerabilities.ignore with the reason",
        container=image.where,
    )


def check_model(image: TrustedImage, facts: ImageTrust, cfg: ImagesConfig) -> Iterator[Violation]:
    """MW-IMG-023: the OCI model's signature verified and matched its layers."""
    assert cfg.models is not None
    model = facts.model
    if model is None:
        yield _unknown("MW-IMG-023", image, facts, "the model signature", cfg)
        return
    if model.verified_by & cfg.models.signer_ids:
        return
    if model.signatures == 0:
        message = f"model image {image.reference} ({facts.digest}) has no model signature"
    else:
        message = f"model image {image.reference} ({facts.digest}) does not verify: " + "; ".join(
            model.problems[:3]
        )
    yield Violation(
        "MW-IMG-023",
        message,
        f"sign the model with model_signing using one of ({_names(cfg.models.signers)}), push "
        "one file per layer (oras push) and attach the signature as a referrer (docs/images.md)",
        container=image.where,
    )


def check_image_trust(
    w: Workload, cfg: ImagesConfig, lookups: ImageLookups | None
) -> Iterator[Violation]:
    """Every trust rule the images section enables, for every image it covers."""
    if not cfg.needs_trust_lookups or lookups is None:
        return
    models = cfg.models if cfg.models and cfg.models.verify_at_admission else None
    now = lookups.now
    for image in trust_images(w, cfg):
        wants_model = models is not None and image.is_model
        wants_vulns = cfg.vulnerabilities is not None and image.is_container and not image.is_model
        if not (cfg.signatures or wants_model or wants_vulns):
            continue
        ref = ImageReference.parse(image.reference)
        if wants_model and (ref.digest is None or not DIGEST.match(ref.digest)):
            yield Violation(
                "MW-IMG-023",
                f"model image {image.reference} is not referenced by digest, so the model "
                "verified at admission could differ from the one pulled",
                f"use {ref.name}@sha256:<digest>",
                container=image.where,
            )
            wants_model = False
        looked_up = lookups.get(image.reference)
        if looked_up is None or looked_up.error is not None:
            continue  # MW-IMG-010 reports the failed look-up, per onLookupFailure
        facts = looked_up.trust
        if facts is None or facts.error is not None:
            for rule_id, what, wanted in (
                ("MW-IMG-020", "the signature", cfg.signatures is not None),
                ("MW-IMG-022", "the vulnerability report", wants_vulns),
                ("MW-IMG-023", "the model signature", wants_model),
            ):
                if wanted:
                    yield _unknown(rule_id, image, facts, what, cfg)
            continue
        if cfg.signatures is not None:
            yield from check_signature(image, facts, cfg)
        if wants_vulns:
            assert cfg.vulnerabilities is not None
            yield from check_vulnerabilities(image, facts, cfg.vulnerabilities, now)
        if wants_model:
            yield from check_model(image, facts, cfg)
