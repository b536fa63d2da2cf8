"""Image trust through the real kube-apiserver: signatures, vulnerability gates, OCI models.

A TLS registry on 127.0.0.1 holds images signed and attested by the real cosign, and a model
pushed ORAS-style with its OpenSSF Model Signing signature (the real ``model_signing``)
attached as a referrer. The operator trusts the registry's CA (--registry-ca-bundle); the API
server calls its webhooks. Every denial must name the rule, the image and the fix.
"""

from __future__ import annotations

import datetime
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelward.integrity.bundle import parse_bundle, parse_statement
from modelward_dev.controlplane import LocalControlPlane, ToolRunner
from modelward_dev.cosign import CLASSIC, Cosign, vuln_predicate
from modelward_dev.images import ImageConfig, Layer, build_image
from modelward_dev.oci_models import attach_model_signature, model_files, push_oras_model
from modelward_dev.operator_process import HARNESS_SCOPE_LABEL, OperatorProcess
from modelward_dev.registry import LocalRegistry
from modelward_dev.tenant import Tenant
from modelward_dev.trivy import vulnerability_report, vulnerability_report_crd
from tests.e2e.helpers import (
    apply,
    apply_policy,
    cluster_policy,
    get_json,
    pod,
    wait_for,
    workload,
)

pytestmark = pytest.mark.slow

CONFIGURATION = "modelward-trust"


@dataclass
class Registry:
    registry: LocalRegistry
    public_key: str
    model_key: str
    images: dict[str, str]
    #: The model's OMS subject digest: the DeployedModel's name.
    model_digest: str = ""


def _model_key(work: Path) -> tuple[Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = work / "model-signer.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    work = tmp_path_factory.mktemp("trust")
    with LocalRegistry(tls=True) as registry:
        cosign = Cosign(work / "cosign", registry.ca_path)
        key, public = cosign.key_pair("release")
        client = registry.client()
        images: dict[str, str] = {}
        for name in ("signed", "unsigned", "copied", "critical", "noreport", "scanned"):
            layer = Layer()
            layer.add_file("/app/server", b"\x7fELF" + name.encode(), mode=0o755)
            digest = build_image(name, [layer], ImageConfig(user="65532:65532")).push(
                client, f"serving/{name}", "v1"
            )
            images[name] = f"{registry.host}/serving/{name}@{digest}"
        for name in ("signed", "critical", "noreport"):
            cosign.sign(key, images[name])
        cosign.attest_vulnerabilities(key, images["signed"], vuln_predicate())
        cosign.attest_vulnerabilities(
            key, images["critical"], vuln_predicate(("CVE-2026-1111", "CRITICAL"))
        )
        # The tenant copies a valid classic signature to the tag of an unsigned image.
        cosign.sign(key, images["signed"], CLASSIC)
        source_hex = images["signed"].rsplit(":", 1)[1]
        target_hex = images["copied"].rsplit(":", 1)[1]
        media = "application/vnd.oci.image.manifest.v1+json"
        status, sig = client.manifest("serving/signed", f"sha256-{source_hex}.sig", media)
        assert status == 200
        document = json.loads(sig)
        for blob in [*document["layers"], document["config"]]:
            got, _headers, data = client.request(
                "GET", f"/v2/serving/signed/blobs/{blob['digest']}"
            )
            assert got == 200
            client.push_blob("serving/copied", data)
        client.push_manifest("serving/copied", f"sha256-{target_hex}.sig", sig, media)
        # A model, signed with model_signing, pushed one file per layer; and a tampered copy.
        model = work / "model"
        model.mkdir()
        (model / "config.json").write_bytes(b'{"hidden": 8}')
        (model / "weights.bin").write_bytes(bytes(range(256)) * 32)
        model_private, model_public = _model_key(work)
        subprocess.run(
            [
                str(Path(sys.executable).with_name("model_signing")),
                "sign",
                "key",
                "--private_key",
                str(model_private),
                "--signature",
                str(work / "model.sig"),
                str(model),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        bundle = (work / "model.sig").read_bytes()
        files = model_files(model)
        for name, content, signature in (
            ("model", files, bundle),
            ("model-unsigned", files, None),
            ("model-tampered", {**files, "weights.bin": b"evil" + files["weights.bin"]}, bundle),
        ):
            digest = push_oras_model(client, f"models/{name}", "v1", content)
            if signature is not None:
                attach_model_signature(client, f"models/{name}", digest, signature)
            images[name] = f"{registry.host}/models/{name}@{digest}"
        statement = parse_statement(parse_bundle(bundle).envelope.payload)
        yield Registry(
            registry, public, model_public, images, f"sha256:{statement.subject_digest_hex}"
        )


@pytest.fixture(scope="module")
def trivy_crd(kubectl: ToolRunner) -> str:
    """The Trivy Operator's VulnerabilityReport CRD, installed before the operator starts (it
    watches the kind only if it exists then)."""
    crd = vulnerability_report_crd()
    result = apply(kubectl, crd)
    assert result.returncode == 0, result.stderr
    name = crd["metadata"]["name"]
    kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s", check=True)
    return str(name)


@pytest.fixture(scope="module")
def trust_operator(
    control_plane: LocalControlPlane, crds: list[Path], signed: Registry, trivy_crd: str
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        control_plane=control_plane,
        namespace="modelward-trust-system",
        configuration_name=CONFIGURATION,
        probe_namespace="modelward-trust-probe",
        webhooks="chart",
        extra_args=(
            f"--registry-ca-bundle={signed.registry.ca_path}",
            "--registry-lookup-deadline=2",
        ),
    )
    with process:
        yield process


@pytest.fixture
def scoped(control_plane: LocalControlPlane, trust_operator: OperatorProcess) -> str:
    name = f"trust-{secrets.token_hex(3)}"
    response = control_plane.api_request(
        "POST",
        "/api/v1/namespaces",
        body={"metadata": {"name": name, "labels": {HARNESS_SCOPE_LABEL: CONFIGURATION}}},
    )
    assert response.status == 201, response.message
    return name


def _pod(name: str, namespace: str, image: str) -> dict[str, Any]:
    body = pod(name, namespace)
    body["spec"]["containers"][0]["image"] = image
    return body


def _signers(key: str) -> list[dict[str, str]]:
    return [{"name": "release", "publicKey": key}]


def _denied(result: Any, rule: str, image: str, *words: str) -> None:
    assert result.returncode != 0, "admitted"
    assert f"[{rule}]" in result.stderr and image in result.stderr, result.stderr
    assert "Fix:" in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_signatures_unsigned_denied_signed_admitted_copied_denied(
    kubectl: ToolRunner, scoped: str, signed: Registry
) -> None:
    sections = {"images": {"signatures": {"trustedSigners": _signers(signed.public_key)}}}
    apply_policy(kubectl, cluster_policy(f"{scoped}-sig", scoped, sections))
    admitted = apply(kubectl, _pod("signed", scoped, signed.images["signed"]))
    assert admitted.returncode == 0, admitted.stderr
    _denied(
        apply(kubectl, _pod("unsigned", scoped, signed.images["unsigned"])),
        "MW-IMG-020",
        signed.images["unsigned"],
        "has no signature",
        "cosign sign --key",
    )
    _denied(
        apply(kubectl, _pod("copied", scoped, signed.images["copied"])),
        "MW-IMG-020",
        signed.images["copied"],
        "not for the admitted digest",
    )


def _gate(signed: Registry, **vulnerabilities: Any) -> dict[str, Any]:
    return {
        "images": {
            "signatures": {"trustedSigners": _signers(signed.public_key)},
            "vulnerabilities": {"sources": ["CosignAttestation"], **vulnerabilities},
        }
    }


def _rfc3339(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_vulnerability_gate_critical_ignored_until_expiry_and_missing_reports(
    kubectl: ToolRunner, scoped: str, signed: Registry
) -> None:
    name = f"{scoped}-vuln"
    apply_policy(kubectl, cluster_policy(name, scoped, _gate(signed)))
    assert apply(kubectl, _pod("clean", scoped, signed.images["signed"])).returncode == 0
    critical = signed.images["critical"]
    _denied(
        apply(kubectl, _pod("critical", scoped, critical)),
        "MW-IMG-021",
        critical,
        "CVE-2026-1111 (CRITICAL",
    )
    # Ignored until an expiry a few seconds away: admitted now, denied once it has passed.
    expires = time.time() + 12
    ignore = [{"id": "CVE-2026-1111", "expires": _rfc3339(expires), "reason": "no fix yet"}]
    apply_policy(kubectl, cluster_policy(name, scoped, _gate(signed, ignore=ignore)))
    admitted = apply(kubectl, _pod("ignored", scoped, critical))
    assert admitted.returncode == 0, admitted.stderr
    time.sleep(max(0.0, expires - time.time()) + 1.5)
    _denied(
        apply(kubectl, _pod("expired", scoped, critical)),
        "MW-IMG-021",
        critical,
        "ignore entry expired",
    )
    # No report at all: per onMissingReport.
    noreport = signed.images["noreport"]
    _denied(apply(kubectl, _pod("noreport", scoped, noreport)), "MW-IMG-022", noreport)
    apply_policy(kubectl, cluster_policy(name, scoped, _gate(signed, onMissingReport="Warn")))
    warned = apply(kubectl, _pod("noreport-warn", scoped, noreport))
    assert warned.returncode == 0, warned.stderr
    assert "MW-IMG-022" in warned.stderr  # shown as a warning
    apply_policy(kubectl, cluster_policy(name, scoped, _gate(signed, onMissingReport="Allow")))
    allowed = apply(kubectl, _pod("noreport-allow", scoped, noreport))
    assert allowed.returncode == 0 and "MW-IMG-022" not in allowed.stderr, allowed.stderr


def test_unsigned_or_tampered_oci_models_are_refused_before_any_pod_exists(
    kubectl: ToolRunner, scoped: str, signed: Registry
) -> None:
    sections = {"images": {"models": {"trustedSigners": _signers(signed.model_key)}}}
    apply_policy(kubectl, cluster_policy(f"{scoped}-models", scoped, sections))
    server = signed.images["signed"]
    for name, words in (
        ("model", None),
        ("model-unsigned", "has no model signature"),
        ("model-tampered", "changed: weights.bin"),
    ):
        spec = _pod(name, scoped, server)["spec"]
        spec["volumes"].append({"name": "model", "image": {"reference": signed.images[name]}})
        result = apply(kubectl, workload("Deployment", name, scoped, spec))
        if words is None:
            assert result.returncode == 0, result.stderr
            continue  # recorded in the inventory below
        _denied(result, "MW-IMG-023", signed.images[name], words, 'image volume "model"')
        pods = kubectl("get", "pods", "-n", scoped, "-l", f"app={name}", "-o", "name")
        assert pods.stdout.strip() == ""  # refused at the Deployment: no pod was ever made
    # The model verified at admission is in the inventory before any pod ran it.
    inventory = signed.model_digest.replace(":", "-")

    def recorded() -> bool:
        found = kubectl("get", "deployedmodel", inventory, "-n", scoped, "-o", "json")
        return found.returncode == 0

    wait_for("the DeployedModel of the admitted model", recorded, timeout=20)
    spec = get_json(kubectl, "deployedmodel", inventory, "-n", scoped)["spec"]
    assert spec["digest"] == signed.model_digest and spec["lastResult"] == "verified"
    assert spec["workloads"] == [{"kind": "Deployment", "name": "model"}], spec
    assert spec["signer"].startswith("key:sha256:") and spec["files"] == 2


def test_trivy_operator_reports_are_matched_by_digest(
    kubectl: ToolRunner, scoped: str, signed: Registry
) -> None:
    name = f"{scoped}-trivy"
    sections = {"images": {"vulnerabilities": {"sources": ["TrivyOperator"]}}}
    apply_policy(kubectl, cluster_policy(name, scoped, sections))
    scanned = signed.images["scanned"]
    repository, digest = scanned.split("@")
    _denied(apply(kubectl, _pod("unscanned", scoped, scanned)), "MW-IMG-022", scanned)
    host, _, path = repository.partition("/")
    report = vulnerability_report(
        "replicaset-scanned-server",
        scoped,
        server=host,
        repository=path,
        digest=digest,
        findings=[("CVE-2026-2222", "CRITICAL"), ("CVE-2026-2223", "LOW")],
    )
    assert apply(kubectl, report).returncode == 0

    def judged() -> bool:
        result = apply(kubectl, _pod("scanned", scoped, scanned), extra=("--dry-run=server",))
        return "MW-IMG-021" in result.stderr

    wait_for("the operator to see the VulnerabilityReport", judged, timeout=20)
    _denied(
        apply(kubectl, _pod("scanned", scoped, scanned)),
        "MW-IMG-021",
        scanned,
        "CVE-2026-2222 (CRITICAL",
    )
    ignore = [{"id": "CVE-2026-2222", "expires": "2999-01-01T00:00:00Z", "reason": "accepted"}]
    sections["images"]["vulnerabilities"]["ignore"] = ignore
    apply_policy(kubectl, cluster_policy(name, scoped, sections))
    admitted = apply(kubectl, _pod("scanned-ok", scoped, scanned))
    assert admitted.returncode == 0, admitted.stderr


def test_a_tenant_cannot_forge_a_clean_trivy_report(
    control_plane: LocalControlPlane, scoped: str, signed: Registry, trivy_crd: str
) -> None:
    """A tenant with `edit` who could write a VulnerabilityReport would clear any image."""
    repository, digest = signed.images["critical"].split("@")
    host, _, path = repository.partition("/")
    forged = vulnerability_report(
        "forged", scoped, server=host, repository=path, digest=digest, findings=[]
    )
    with Tenant(control_plane=control_plane, namespace=scoped) as tenant:
        assert tenant.can("create", "pods")  # the tenant does hold edit rights here
        assert not tenant.can("create", "vulnerabilityreports.aquasecurity.github.io")
        refused = tenant.kubectl("create", "-f", "-", input=json.dumps(forged))
        assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
