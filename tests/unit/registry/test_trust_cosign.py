"""Image signatures and vulnerability attestations made by the real cosign, verified by modelward.

A real registry (Debian's distribution registry, TLS on 127.0.0.1) and the real cosign
(``hack/build-cosign.sh``): images are pushed, signed with ``cosign sign --key`` in both
layouts (the classic ``.sig`` tag and cosign v3's Sigstore bundle referrer), attested with
``cosign attest --type vuln``; modelward gathers the evidence through its registry client and
the engine judges a pod. The attacks a tenant can make with push rights to their own
repository: no signature, a valid signature copied from another image, a signature by an
untrusted key, a clean report signed by nobody trusted. cosign's own ``verify`` is asked the
same questions, so the two tools are shown to agree.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelward.engine.evaluate import evaluate_workload
from modelward.engine.facts import ImageLookups
from modelward.engine.policy import Policy
from modelward.engine.workloads import workload_from_object
from modelward.registry.auth import CredentialStore
from modelward.registry.client import RegistryClient, RegistrySettings
from modelward.registry.lookups import ImageInspector, requests_for
from modelward_dev.binaries import find_cosign
from modelward_dev.cosign import CLASSIC, vuln_predicate
from modelward_dev.images import ImageConfig, Layer, build_image
from modelward_dev.registry import LocalRegistry
from tests.unit.engine.builders import compliant_pod, facts, policy

pytestmark = pytest.mark.slow


@dataclass
class Signed:
    registry: LocalRegistry
    cosign: Path
    work: Path
    env: dict[str, str]
    public_key: str
    other_public_key: str
    #: name -> reference by digest
    images: dict[str, str]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.cosign), *args],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"cosign {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signed]:
    cosign = find_cosign()
    work = tmp_path_factory.mktemp("cosign")
    registry = LocalRegistry(tls=True)
    registry.start()
    try:
        client = registry.client()
        images = {}
        for name in (
            "classic",
            "bundled",
            "unsigned",
            "copied",
            "critical",
            "low",
            "untrusted",
            "certified",
        ):
            layer = Layer()
            layer.add_file("app/name.txt", name.encode())
            image = build_image(name, [layer], ImageConfig(user="65532"))
            digest = image.push(client, f"serving/{name}", "v1")
            images[name] = f"{registry.host}/serving/{name}@{digest}"
        env = {
            **os.environ,
            "SSL_CERT_FILE": str(registry.ca_path),
            "COSIGN_PASSWORD": "",
            "HOME": str(work),  # cosign caches TUF metadata under $HOME
        }
        (work / "empty-signing-config.json").write_text(
            json.dumps({"mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json"})
        )
        state = Signed(registry, cosign, work, env, "", "", images)
        state.run("generate-key-pair")
        other = work / "other"
        other.mkdir()
        subprocess.run(
            [str(cosign), "generate-key-pair"], cwd=other, env=env, check=True, capture_output=True
        )
        state.public_key = (work / "cosign.pub").read_text()
        state.other_public_key = (other / "cosign.pub").read_text()
        bundle = ("--signing-config", "empty-signing-config.json")
        state.run("sign", "--key", "cosign.key", "-y", *CLASSIC, images["classic"])
        state.run("sign", "--key", "cosign.key", "-y", *bundle, images["bundled"])
        state.run("sign", "--key", str(other / "cosign.key"), "-y", *CLASSIC, images["untrusted"])
        # A tenant copies the classic image's valid signature to the tag of another image.
        classic_hex = images["classic"].rsplit(":", 1)[1]
        copied_hex = images["copied"].rsplit(":", 1)[1]
        status, body = client.manifest(
            "serving/classic",
            f"sha256-{classic_hex}.sig",
            "application/vnd.oci.image.manifest.v1+json",
        )
        assert status == 200
        for layer_doc in json.loads(body)["layers"] + [json.loads(body)["config"]]:
            _copy_blob(client, "serving/classic", "serving/copied", layer_doc["digest"])
        client.push_manifest(
            "serving/copied",
            f"sha256-{copied_hex}.sig",
            body,
            "application/vnd.oci.image.manifest.v1+json",
        )
        for name, finding, layout in (
            ("critical", ("CVE-2026-0001", "CRITICAL"), bundle),
            ("low", ("CVE-2026-0002", "LOW"), CLASSIC),
        ):
            state.run("sign", "--key", "cosign.key", "-y", *bundle, images[name])
            predicate = work / f"{name}.json"
            predicate.write_text(json.dumps(vuln_predicate(finding)))
            state.run(
                "attest",
                "--key",
                "cosign.key",
                "--type",
                "vuln",
                "--predicate",
                str(predicate),
                "-y",
                *layout,
                images[name],
            )
        yield state
    finally:
        registry.stop()


def _copy_blob(client: Any, source: str, target: str, digest: str) -> None:
    status, _headers, data = client.request("GET", f"/v2/{source}/blobs/{digest}")
    assert status == 200
    assert client.push_blob(target, data) == digest


def _lookups(signed: Signed, pod: dict[str, Any], policies: list[Policy]) -> ImageLookups:
    async def gather() -> ImageLookups:
        settings = RegistrySettings(ca_bundles=(str(signed.registry.ca_path),))
        async with RegistryClient(settings=settings) as client:
            inspector = ImageInspector(client=client)
            references = [c["image"] for c in pod["spec"]["containers"]]
            return await inspector.lookups(
                requests_for(references, policies), credentials=CredentialStore()
            )

    return asyncio.run(gather())


def _judge(signed: Signed, image: str, *policies: Policy) -> list[str]:
    pod = compliant_pod()
    pod["spec"]["containers"][0]["image"] = image
    lookups = _lookups(signed, pod, list(policies))
    decision = evaluate_workload(workload_from_object(pod), facts(), policies, images=lookups)
    return [f.describe() for f in decision.findings]


def _signature_policy(key: str) -> Policy:
    return policy(
        {
            "images": {
                "allowedRegistries": [],
                "signatures": {"trustedSigners": [{"name": "release", "publicKey": key}]},
            }
        }
    )


def test_images_signed_by_cosign_in_either_layout_are_admitted(signed: Signed) -> None:
    trusted = _signature_policy(signed.public_key)
    assert _judge(signed, signed.images["classic"], trusted) == []
    assert _judge(signed, signed.images["bundled"], trusted) == []
    # cosign agrees, for both layouts.
    for name in ("classic", "bundled"):
        verified = signed.run(
            "verify",
            "--key",
            "cosign.pub",
            "--insecure-ignore-tlog",
            "--insecure-ignore-sct",
            *(("--new-bundle-format=false",) if name == "classic" else ()),
            signed.images[name],
            check=False,
        )
        assert verified.returncode == 0, verified.stderr[-1500:]


def test_an_unsigned_image_is_denied_with_rule_image_and_fix(signed: Signed) -> None:
    findings = _judge(signed, signed.images["unsigned"], _signature_policy(signed.public_key))
    assert len(findings) == 1, findings
    assert "MW-IMG-020" in findings[0]
    assert signed.images["unsigned"] in findings[0]
    assert "has no signature" in findings[0]
    assert "cosign sign --key" in findings[0]


def test_a_valid_signature_copied_from_another_image_is_denied(signed: Signed) -> None:
    findings = _judge(signed, signed.images["copied"], _signature_policy(signed.public_key))
    assert len(findings) == 1, findings
    assert "MW-IMG-020" in findings[0]
    assert "not for the admitted digest" in findings[0]
    rejected = signed.run(
        "verify",
        "--key",
        "cosign.pub",
        "--insecure-ignore-tlog",
        "--new-bundle-format=false",
        signed.images["copied"],
        check=False,
    )
    assert rejected.returncode != 0  # cosign refuses it too


def test_a_signature_by_a_key_the_policy_does_not_trust_is_denied(signed: Signed) -> None:
    findings = _judge(signed, signed.images["untrusted"], _signature_policy(signed.public_key))
    assert len(findings) == 1 and "MW-IMG-020" in findings[0], findings
    # ...and a policy trusting only the other key rejects the release-signed image.
    other = _signature_policy(signed.other_public_key)
    assert any("MW-IMG-020" in f for f in _judge(signed, signed.images["classic"], other))
    assert _judge(signed, signed.images["untrusted"], other) == []


def _vuln_policy(signed: Signed, **vulnerabilities: Any) -> Policy:
    return policy(
        {
            "images": {
                "signatures": {
                    "trustedSigners": [{"name": "release", "publicKey": signed.public_key}]
                },
                "vulnerabilities": {"sources": ["CosignAttestation"], **vulnerabilities},
            }
        }
    )


def test_a_critical_cve_in_a_cosign_attestation_is_denied(signed: Signed) -> None:
    findings = _judge(signed, signed.images["critical"], _vuln_policy(signed))
    assert len(findings) == 1, findings
    assert "MW-IMG-021" in findings[0] and "CVE-2026-0001 (CRITICAL" in findings[0]
    # The classic .att layout is read too: a LOW finding passes maxSeverity HIGH.
    assert _judge(signed, signed.images["low"], _vuln_policy(signed)) == []
    low = _judge(signed, signed.images["low"], _vuln_policy(signed, maxSeverity="NONE"))
    assert len(low) == 1 and "CVE-2026-0002 (LOW" in low[0], low


def test_an_ignored_cve_is_admitted_until_its_expiry(signed: Signed) -> None:
    future = [{"id": "CVE-2026-0001", "expires": "2999-01-01T00:00:00Z", "reason": "no fix yet"}]
    assert _judge(signed, signed.images["critical"], _vuln_policy(signed, ignore=future)) == []
    past = [{"id": "CVE-2026-0001", "expires": "2020-01-01T00:00:00Z", "reason": "old"}]
    findings = _judge(signed, signed.images["critical"], _vuln_policy(signed, ignore=past))
    assert len(findings) == 1 and "ignore entry expired 2020-01-01" in findings[0], findings


def test_a_missing_report_follows_on_missing_report(signed: Signed) -> None:
    denied = _judge(signed, signed.images["bundled"], _vuln_policy(signed))
    assert len(denied) == 1 and "MW-IMG-022" in denied[0], denied
    # A report signed by a key the policy does not trust is no report.
    untrusted = policy(
        {
            "images": {
                "vulnerabilities": {
                    "sources": ["CosignAttestation"],
                    "attestors": [{"name": "other", "publicKey": signed.other_public_key}],
                }
            }
        }
    )
    assert any("MW-IMG-022" in f for f in _judge(signed, signed.images["critical"], untrusted))
    assert (
        _judge(signed, signed.images["bundled"], _vuln_policy(signed, onMissingReport="Allow"))
        == []
    )


def test_modelward_check_with_registry_lookups_judges_signatures_offline(
    signed: Signed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from modelward.cli import main

    pods = []
    for name in ("classic", "unsigned"):
        body = compliant_pod()
        body["metadata"] = {"name": name, "namespace": "serving-ci"}
        body["spec"]["containers"][0]["image"] = signed.images[name]
        pods.append(body)
    manifests = tmp_path / "pods.yaml"
    manifests.write_text(yaml.safe_dump_all(pods))
    policy_doc = {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": "ClusterModelPolicy",
        "metadata": {"name": "signed"},
        "spec": {
            "match": {"namespaces": ["serving-*"]},
            "images": {
                "signatures": {
                    "trustedSigners": [{"name": "release", "publicKey": signed.public_key}]
                }
            },
        },
    }
    policies = tmp_path / "policy.yaml"
    policies.write_text(yaml.safe_dump(policy_doc))
    args = ["check", "-f", str(manifests), "--policy", str(policies)]
    assert main(args) == 0  # without look-ups the signature rule is not evaluated
    capsys.readouterr()
    assert (
        main([*args, "--registry-lookups", f"--registry-ca-bundle={signed.registry.ca_path}"]) == 1
    )
    out = capsys.readouterr().out
    assert f"IMAGE {signed.images['classic']}" in out
    assert "signatures=1 (by 1 trusted signer(s))" in out
    assert "[MW-IMG-020]" in out and signed.images["unsigned"] in out
    assert out.count("[MW-IMG-020]") == 1


def _certificate(subject: str, key: Any, issuer_key: Any, issuer: str, *, ca: bool) -> Any:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def test_a_certificate_from_a_trusted_ca_signs_images_as_cosign_attaches_it(
    signed: Signed, tmp_path: Path
) -> None:
    """cosign sign --certificate --certificate-chain: the leaf and chain travel in the
    signature layer's annotations; the policy trusts the CA, never the leaf it is sent."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("release CA", ca_key, ca_key, "release CA", ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate("release signer", leaf_key, ca_key, "release CA", ca=False)
    pem = serialization.Encoding.PEM
    (tmp_path / "leaf.key").write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    ca_pem = ca.public_bytes(pem).decode()
    (tmp_path / "ca.pem").write_text(ca_pem)
    signed.run(
        "import-key-pair",
        "--key",
        str(tmp_path / "leaf.key"),
        "--output-key-prefix",
        str(tmp_path / "imported"),
    )
    image = signed.images["certified"]
    signed.run(
        "sign", "--key", str(tmp_path / "imported.key"),
        "--certificate", str(tmp_path / "leaf.pem"),
        "--certificate-chain", str(tmp_path / "ca.pem"),
        "-y", *CLASSIC, image,
    )  # fmt: skip
    by_ca = policy(
        {"images": {"signatures": {"trustedSigners": [{"name": "ca", "caCertificate": ca_pem}]}}}
    )
    assert _judge(signed, image, by_ca) == []
    other_ca_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _certificate("other CA", other_ca_key, other_ca_key, "other CA", ca=True)
    by_other = policy(
        {
            "images": {
                "signatures": {
                    "trustedSigners": [
                        {"name": "other", "caCertificate": other_ca.public_bytes(pem).decode()}
                    ]
                }
            }
        }
    )
    findings = _judge(signed, image, by_other)
    assert len(findings) == 1 and "MW-IMG-020" in findings[0], findings
