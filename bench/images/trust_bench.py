"""Cold cost of an image's trust look-up: signature tag + referrers + bundles, verified.

Against the local TLS registry (Debian's distribution registry, which has no referrers API,
so the referrers come from the fallback tag as on many registries), with images signed by the
real cosign in both layouts and attested (``--type vuln``). Each measurement uses a fresh
``RegistryClient`` (cold: no cached tags, manifests, blobs or tokens) and times
``ImageInspector.facts`` for one image with and without trust evidence requested, so the
difference is what signatures and referrers cost. Also the warm cost (second look-up, same
client) and the verification CPU alone (no network), per signer count.

    PYTHONPATH=operator:hack .venv/bin/python -m bench.images.trust_bench [--runs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.unit.engine.builders import compliant_pod, policy

from modelward.registry.auth import CredentialStore
from modelward.registry.client import RegistryClient, RegistrySettings
from modelward.registry.lookups import ImageInspector, ImageRequest, requests_for
from modelward_dev.cosign import CLASSIC, Cosign, vuln_predicate
from modelward_dev.images import ImageConfig, Layer, build_image
from modelward_dev.registry import LocalRegistry


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p90_ms": round(ordered[int(len(ordered) * 0.9) - 1] * 1000, 2),
    }


async def _once(ca: Path, request: ImageRequest, *, warm: bool) -> tuple[float, Any]:
    settings = RegistrySettings(ca_bundles=(str(ca),))
    async with RegistryClient(settings=settings) as client:
        inspector = ImageInspector(client=client)
        if warm:
            await inspector.facts(request, credentials=CredentialStore())
        started = time.perf_counter()
        facts = await inspector.facts(request, credentials=CredentialStore())
        return time.perf_counter() - started, facts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, LocalRegistry(tls=True) as registry:
        cosign = Cosign(Path(work) / "cosign", registry.ca_path)
        key, public = cosign.key_pair("release")
        layer = Layer()
        layer.add_file("/app/server", b"\x7fELF bench")
        digest = build_image("bench", [layer], ImageConfig(user="65532")).push(
            registry.client(), "bench/app", "v1"
        )
        reference = f"{registry.host}/bench/app@{digest}"
        cosign.sign(key, reference)
        cosign.sign(key, reference, CLASSIC)
        cosign.attest_vulnerabilities(key, reference, vuln_predicate(("CVE-2026-1", "HIGH")))
        pod = compliant_pod()
        pod["spec"]["containers"][0]["image"] = reference
        signers = [{"name": "release", "publicKey": public}]
        plain = policy({"images": {"requireNonRootUser": True}})
        trusted = policy(
            {
                "images": {
                    "requireNonRootUser": True,
                    "signatures": {"trustedSigners": signers},
                    "vulnerabilities": {"sources": ["CosignAttestation"]},
                }
            }
        )
        (without,) = requests_for([reference], [plain])
        (with_trust,) = requests_for([reference], [trusted])
        results: dict[str, Any] = {
            "image": "1 layer; 2 signatures (.sig + bundle), 1 vuln attestation"
        }
        for label, request, warm in (
            ("cold_without_trust", without, False),
            ("cold_with_trust", with_trust, False),
            ("warm_with_trust", with_trust, True),
        ):
            times = []
            for _ in range(args.runs):
                elapsed, facts = asyncio.run(_once(registry.ca_path, request, warm=warm))
                assert facts.error is None, facts.error
                times.append(elapsed)
            results[label] = _ms(times)
            if request.trust is not None:
                assert facts.trust is not None and facts.trust.signed_by, facts.trust
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
