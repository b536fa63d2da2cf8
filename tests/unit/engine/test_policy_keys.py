"""Trusted keys: parsed before a policy is enforced (issue 10 #10), and a cluster policy's
keys read only from modelward's own namespace (issue 9 #6); no pod-label opt-outs in cluster
policies (issue 9 #8)."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from modelward.engine import StaticKeySource, parse_policy
from modelward.engine.rules.integrity import keys_volume
from modelward.errors import PolicyError
from tests.unit.engine.builders import DIGEST, ca_certificate_pem, policy, public_key_pem

VERIFIER = {"image": f"registry.example.com/modelward@{DIGEST}"}
OWN = "modelward-system"


def _integrity(*signers: dict[str, Any]) -> dict[str, Any]:
    return {"integrity": {"trustedSigners": list(signers), "verifier": VERIFIER}}


def _rsa_public_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.mark.parametrize(
    ("signer", "words"),
    [
        ({"publicKey": "not a key"}, "not a PEM public key"),
        (
            {"publicKey": "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n"},
            "not a PEM public key",
        ),
        ({"publicKey": _rsa_public_key()}, "not an ECDSA public key"),
        ({"publicKey": public_key_pem(ec.SECP256K1())}, "secp256k1"),
        ({"caCertificate": public_key_pem()}, "not a PEM certificate"),
    ],
    ids=["text", "truncated", "rsa", "secp256k1", "key-as-ca"],
)
def test_a_trusted_signer_that_is_not_a_usable_key_is_refused(
    signer: dict[str, Any], words: str
) -> None:
    with pytest.raises(PolicyError) as err:
        policy(_integrity({"name": "release", **signer}))
    assert err.value.reason == "InvalidKey" and words in str(err.value)
    assert err.value.field is not None and err.value.field.startswith(
        "spec.integrity.trustedSigners.0."
    )


def test_an_oversized_pem_is_refused_by_the_schema() -> None:
    with pytest.raises(PolicyError) as err:
        policy(_integrity({"name": "release", "publicKey": "x" * 20000}))
    assert err.value.field == "spec.integrity.trustedSigners.0.publicKey"


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_supported_keys_and_ca_bundles_are_accepted(curve: ec.EllipticCurve) -> None:
    bundle = ca_certificate_pem() + ca_certificate_pem()
    p = policy(
        _integrity(
            {"name": "release", "publicKey": public_key_pem(curve)},
            {"name": "ca", "caCertificate": bundle},
        )
    )
    assert p.integrity is not None and len(p.integrity.signers) == 2


def _cluster_ref(ref: dict[str, Any], source: str = "configMapKeyRef") -> dict[str, Any]:
    return _integrity({"name": "team", source: ref})


def test_a_cluster_policy_ref_without_namespace_is_refused_by_the_schema() -> None:
    with pytest.raises(PolicyError) as err:
        policy(_cluster_ref({"name": "keys", "key": "k"}), keys=StaticKeySource(OWN))
    assert "namespace" in str(err.value)


def test_a_cluster_policy_key_in_a_tenant_namespace_is_refused() -> None:
    tenant = StaticKeySource(OWN, {("ConfigMap", "serving-a", "keys", "k"): public_key_pem()})
    with pytest.raises(PolicyError) as err:
        policy(_cluster_ref({"name": "keys", "key": "k", "namespace": "serving-a"}), keys=tenant)
    assert err.value.reason == "UntrustedKeySource" and OWN in str(err.value)


def test_a_cluster_policy_key_is_read_from_modelwards_namespace_and_inlined() -> None:
    pem = public_key_pem()
    keys = StaticKeySource(OWN, {("Secret", OWN, "keys", "k"): pem})
    p = policy(
        _cluster_ref({"name": "keys", "key": "k", "namespace": OWN}, "secretKeyRef"), keys=keys
    )
    assert p.integrity is not None and p.integrity.signers[0].pem == pem
    sources = keys_volume(p.integrity)["projected"]["sources"]
    # Only the Downward API (the pod's annotation, written by modelward): no Secret volume,
    # which would be read from the pod's namespace.
    assert [next(iter(s)) for s in sources] == ["downwardAPI"]


def test_a_missing_or_bad_referenced_key_is_named() -> None:
    ref = {"name": "keys", "key": "k", "namespace": OWN}
    with pytest.raises(PolicyError) as err:
        policy(_cluster_ref(ref), keys=StaticKeySource(OWN))
    assert err.value.reason == "KeyNotFound" and "ConfigMap modelward-system/keys" in str(err.value)
    with pytest.raises(PolicyError) as err:
        policy(_cluster_ref(ref), keys=None)
    assert err.value.reason == "KeyNotFound"
    bad = StaticKeySource(OWN, {("ConfigMap", OWN, "keys", "k"): "garbage"})
    with pytest.raises(PolicyError) as err:
        policy(_cluster_ref(ref), keys=bad)
    assert err.value.reason == "InvalidKey"


def test_a_model_policy_reads_keys_from_its_own_namespace_by_volume() -> None:
    p = policy(
        _cluster_ref({"name": "keys", "key": "k"}),
        kind="ModelPolicy",
        namespace="serving-a",
    )
    assert p.integrity is not None and p.integrity.signers[0].pem is None
    sources = keys_volume(p.integrity)["projected"]["sources"]
    assert sources == [{"configMap": {"name": "keys", "items": [{"key": "k", "path": "team.pem"}]}}]
    with pytest.raises(PolicyError) as err:  # no namespace field on a ModelPolicy's refs
        policy(
            _cluster_ref({"name": "keys", "key": "k", "namespace": "other"}),
            kind="ModelPolicy",
            namespace="serving-a",
        )
    assert "unknown field" in str(err.value)


def test_exclude_pod_selector_is_refused_in_cluster_policies_only() -> None:
    exclude = {"podSelector": {"matchLabels": {"modelward.io/exempt": "true"}}}
    with pytest.raises(PolicyError) as err:
        policy({"images": {}}, exclude=exclude)
    assert err.value.field == "spec.exclude.podSelector"
    namespaced = policy({"images": {}}, kind="ModelPolicy", namespace="a", exclude=exclude)
    assert not namespaced.exclude.empty


def test_the_offline_parse_accepts_the_shipped_integrity_example() -> None:
    import pathlib

    import yaml

    root = pathlib.Path(__file__).resolve().parents[3]
    doc = yaml.safe_load((root / "manifests/examples/policies/integrity.yaml").read_text())
    p = parse_policy(doc)
    assert p.match.pod_selector is None  # selects by namespace: no label to leave out
    assert p.integrity is not None and p.integrity.model_pods == "ModelVolumes"
