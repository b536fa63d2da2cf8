"""OCI models verified at admission: signed with the real ``model_signing``, pushed ORAS-style
(one file per layer) to a real TLS registry, the signature attached as an OCI referrer.

Admission compares the signed file digests with the layer digests of the admitted manifest,
so a changed, missing or added file is refused before any pod exists, without downloading
the weights. What it cannot compare (packed layers) is left to the in-pod verifier, and the
signature itself must still verify.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modelward.engine.evaluate import evaluate_workload
from modelward.engine.facts import ImageLookups
from modelward.engine.policy import Policy
from modelward.engine.rules.images import image_references
from modelward.engine.workloads import workload_from_object
from modelward.integrity.errors import Rejection
from modelward.integrity.image_signatures import ModelLayer, verify_oci_model
from modelward.integrity.trust import TrustPolicy, load_public_keys
from modelward.registry.auth import CredentialStore
from modelward.registry.client import RegistryClient, RegistrySettings
from modelward.registry.lookups import ImageInspector, requests_for
from modelward_dev.images import ImageConfig, Layer, build_image
from modelward_dev.oci_models import attach_model_signature, model_files, push_oras_model
from modelward_dev.registry import LocalRegistry
from tests.unit.engine.builders import compliant_pod, facts, policy

pytestmark = pytest.mark.slow

MODEL_SIGNING = Path(sys.executable).with_name("model_signing")


def _key_pair(directory: Path, name: str) -> tuple[Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = directory / f"{name}.pem"
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


def _sign(model: Path, private: Path, out: Path) -> bytes:
    subprocess.run(
        [
            str(MODEL_SIGNING),
            "sign",
            "key",
            "--private_key",
            str(private),
            "--signature",
            str(out),
            str(model),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out.read_bytes()


@dataclass
class Models:
    registry: LocalRegistry
    public_key: str
    server: str
    refs: dict[str, str]
    bundle: bytes


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Models]:
    work = tmp_path_factory.mktemp("models")
    model = work / "model"
    model.mkdir()
    (model / "config.json").write_bytes(b'{"layers": 2}')
    (model / "weights.bin").write_bytes(bytes(range(256)) * 64)
    private, public = _key_pair(work, "release")
    other_private, _ = _key_pair(work, "other")
    bundle = _sign(model, private, work / "model.sig")
    other_bundle = _sign(model, other_private, work / "other.sig")
    registry = LocalRegistry(tls=True)
    registry.start()
    try:
        client = registry.client()
        files = model_files(model)
        refs = {}

        def push(name: str, content: dict[str, bytes], signature: bytes | None) -> None:
            digest = push_oras_model(client, f"models/{name}", "v1", content)
            if signature is not None:
                attach_model_signature(client, f"models/{name}", digest, signature)
            refs[name] = f"{registry.host}/models/{name}@{digest}"

        push("signed", files, bundle)
        push("unsigned", files, None)
        push("tampered", {**files, "weights.bin": b"backdoored" + files["weights.bin"]}, bundle)
        push("extra", {**files, "payload.pkl": b"cos\nsystem\n"}, bundle)
        push("missing", {"config.json": files["config.json"]}, bundle)
        push("other-signer", files, other_bundle)
        server_layer = Layer()
        server_layer.add_file("srv/app", b"server")
        server = build_image("server", [server_layer], ImageConfig(user="65532"))
        server_digest = server.push(client, "serving/server", "v1")
        yield Models(
            registry, public, f"{registry.host}/serving/server@{server_digest}", refs, bundle
        )
    finally:
        registry.stop()


def _policy(models: Models) -> Policy:
    return policy(
        {
            "images": {
                "models": {"trustedSigners": [{"name": "release", "publicKey": models.public_key}]}
            }
        }
    )


def _judge(models: Models, model_ref: str) -> list[str]:
    pod = compliant_pod()
    pod["spec"]["containers"][0]["image"] = models.server
    pod["spec"]["volumes"].append({"name": "model", "image": {"reference": model_ref}})
    policies = [_policy(models)]
    workload = workload_from_object(pod)

    async def gather() -> ImageLookups:
        settings = RegistrySettings(ca_bundles=(str(models.registry.ca_path),))
        async with RegistryClient(settings=settings) as client:
            inspector = ImageInspector(client=client)
            return await inspector.lookups(
                requests_for(image_references(workload), policies),
                credentials=CredentialStore(),
            )

    lookups = asyncio.run(gather())
    decision = evaluate_workload(workload, facts(), policies, images=lookups)
    return [f.describe() for f in decision.findings]


def test_a_signed_model_artifact_is_admitted(models: Models) -> None:
    assert _judge(models, models.refs["signed"]) == []


def test_an_unsigned_model_is_refused(models: Models) -> None:
    findings = _judge(models, models.refs["unsigned"])
    assert len(findings) == 1, findings
    assert "MW-IMG-023" in findings[0] and 'image volume "model"' in findings[0]
    assert "has no model signature" in findings[0]


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("tampered", "changed: weights.bin"),
        ("extra", "extra: payload.pkl"),
        ("missing", "missing: weights.bin"),
    ],
)
def test_a_model_that_is_not_what_was_signed_is_refused(
    models: Models, name: str, says: str
) -> None:
    findings = _judge(models, models.refs[name])
    assert len(findings) == 1, findings
    assert "MW-IMG-023" in findings[0] and says in findings[0], findings


def test_a_model_signed_by_another_key_is_refused(models: Models) -> None:
    findings = _judge(models, models.refs["other-signer"])
    assert len(findings) == 1 and "MW-IMG-023" in findings[0], findings


def test_a_model_referenced_by_tag_is_refused(models: Models) -> None:
    by_tag = models.refs["signed"].split("@")[0] + ":v1"
    findings = _judge(models, by_tag)
    assert any("MW-IMG-023" in f and "not referenced by digest" in f for f in findings), findings


def test_packed_layers_are_left_to_the_in_pod_verifier_but_the_signature_must_hold(
    models: Models,
) -> None:
    trust = TrustPolicy(keys=tuple(load_public_keys(models.public_key.encode(), source="t")))
    modelcar = [
        ModelLayer("sha256:" + "0" * 64, "application/vnd.oci.image.layer.v1.tar+gzip", None)
    ]
    check = verify_oci_model(models.bundle, layers=modelcar, trust=trust)
    assert check.deferred is not None and "title" in check.deferred
    untrusted = TrustPolicy()
    with pytest.raises(Rejection):
        verify_oci_model(models.bundle, layers=modelcar, trust=untrusted)
