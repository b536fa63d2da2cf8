"""docs/release.md's signing procedure, run on modelward's real release image.

The slim verifier image is built and pushed exactly as ``make image-verifier PUSH=... CA_CERT=...``
does (the same module and arguments), to the harness's TLS registry; it is signed by digest
with the real cosign (``hack/build-cosign.sh``) and a release key, and its SBOM attached as a
signed CycloneDX attestation. Then modelward judges it with its own image rules, the way a
user's cluster would (``modelward check --registry-lookups`` with a policy whose
``images.signatures`` trusts the release key): the signed release passes; the same image where
no signature travels with it (a mirror), a policy trusting another key, and a different image
pushed over the release tag are each denied with MW-IMG-020. cosign's own ``verify`` and
``verify-attestation`` (the users' check in docs/release.md) accept the release too.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from modelward.cli import main
from modelward_dev.cosign import BUNDLE, Cosign
from modelward_dev.images import MANIFEST_MEDIA_TYPE, ImageConfig, Layer, build_image
from modelward_dev.registry import LocalRegistry
from tests.unit.engine.builders import compliant_pod

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
REPOSITORY = "modelward-verifier"
TAG = "0.1.0"


@dataclass
class Release:
    registry: LocalRegistry
    cosign: Cosign
    #: host/modelward-verifier@sha256:..., as `make image-verifier PUSH=...` printed it
    signed: str
    release_key: str
    other_key: str


def _make_image_verifier(registry: LocalRegistry, output: Path) -> str:
    """The command ``make image-verifier PUSH=<host>/modelward-verifier:0.1.0 CA_CERT=<ca>``
    runs; returns the reference by digest it printed."""
    recipe = (ROOT / "Makefile").read_text().split("\nimage-verifier:", 1)[1].split("\n\n", 1)[0]
    assert "-m modelward_dev.images verifier" in recipe and "--ca-cert $(CA_CERT)" in recipe
    done = subprocess.run(
        [
            sys.executable, "-m", "modelward_dev.images", "verifier",
            "--output", str(output),
            "--push", f"{registry.host}/{REPOSITORY}:{TAG}",
            "--ca-cert", str(registry.ca_path),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'hack'}{os.pathsep}{ROOT / 'operator'}"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    pushed = re.search(
        r"^pushed (\S+):" + re.escape(TAG) + r"@(sha256:[0-9a-f]{64})$", done.stdout, re.M
    )
    assert pushed, done.stdout
    return f"{pushed.group(1)}@{pushed.group(2)}"


def _make_sbom(output: Path) -> None:
    """``make sbom``'s second command: the verifier image's CycloneDX SBOM."""
    done = subprocess.run(
        [
            str(BIN / "cyclonedx-py"), "requirements", str(ROOT / "operator" / "verifier.lock"),
            "--pyproject", str(ROOT / "pyproject.toml"), "--mc-type", "application",
            "--output-reproducible", "--of", "JSON", "--validate", "-o", str(output),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    work = tmp_path_factory.mktemp("release")
    registry = LocalRegistry(tls=True)
    registry.start()
    try:
        signed = _make_image_verifier(registry, work / "verifier-image")
        cosign = Cosign(work=work / "cosign", ca=registry.ca_path)
        release_key, release_public = cosign.key_pair("release")
        _other_key, other_public = cosign.key_pair("other")
        sbom = work / "sbom-verifier.cdx.json"
        _make_sbom(sbom)
        # docs/release.md: sign by digest, attach the SBOM as a signed attestation (offline:
        # an empty signing config instead of the public transparency log).
        cosign.run("sign", "--key", str(release_key), "-y", *BUNDLE, signed)
        cosign.run(
            "attest", "--key", str(release_key), "--type", "cyclonedx",
            "--predicate", str(sbom), "-y", *BUNDLE, signed,
        )  # fmt: skip
        yield Release(registry, cosign, signed, release_public, other_public)
    finally:
        registry.stop()


def _check(
    release: Release,
    image: str,
    key: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *,
    require_digest: bool = True,
) -> tuple[int, str]:
    """``modelward check -f pod.yaml --policy policy.yaml --registry-lookups``: a pod running
    ``image``, judged by a policy whose ``images.signatures`` trusts ``key``."""
    pod = compliant_pod()
    pod["metadata"] = {"name": "release", "namespace": "serving-ci"}
    pod["spec"]["containers"][0]["image"] = image
    policy = {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": "ClusterModelPolicy",
        "metadata": {"name": "modelward-release"},
        "spec": {
            "match": {"namespaces": ["serving-*"]},
            "images": {
                "requireDigest": require_digest,
                "signatures": {"trustedSigners": [{"name": "modelward-release", "publicKey": key}]},
            },
        },
    }
    (tmp_path / "pod.yaml").write_text(yaml.safe_dump(pod))
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    capsys.readouterr()
    code = main(
        [
            "check", "-f", str(tmp_path / "pod.yaml"), "--policy", str(tmp_path / "policy.yaml"),
            "--registry-lookups", f"--registry-ca-bundle={release.registry.ca_path}",
        ]
    )  # fmt: skip
    return code, capsys.readouterr().out


def _copy(release: Release, source: str, target: str, reference: str) -> None:
    """Copy a manifest and its blobs between repositories, as a registry mirror does (cosign's
    signatures are separate artifacts: a plain image copy leaves them behind)."""
    client = release.registry.client()
    status, body = client.manifest(source, reference, MANIFEST_MEDIA_TYPE)
    assert status == 200
    manifest = json.loads(body)
    for blob in [manifest["config"], *manifest["layers"]]:
        status, _headers, data = client.request("GET", f"/v2/{source}/blobs/{blob['digest']}")
        assert status == 200
        assert client.push_blob(target, data) == blob["digest"]
    client.push_manifest(target, TAG, body, MANIFEST_MEDIA_TYPE)


def test_the_signed_release_image_passes_modelwards_image_rules_and_cosign_verify(
    release: Release, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _check(release, release.signed, release.release_key, tmp_path, capsys)
    assert code == 0, out
    assert f"IMAGE {release.signed}" in out
    assert "signatures=1 (by 1 trusted signer(s))" in out
    assert "MW-IMG-020" not in out
    # The users' check in docs/release.md, with cosign itself.
    key = release.cosign.work / "release" / "cosign.pub"
    offline = ("--insecure-ignore-tlog", "--insecure-ignore-sct")
    release.cosign.run("verify", "--key", str(key), *offline, release.signed)
    attested = release.cosign.run(
        "verify-attestation", "--key", str(key), "--type", "cyclonedx", *offline, release.signed
    )
    statement = json.loads(base64.b64decode(json.loads(attested.stdout.splitlines()[0])["payload"]))
    assert statement["predicateType"] == "https://cyclonedx.org/bom"
    assert statement["predicate"]["metadata"]["component"]["name"] == "modelward"


def test_the_same_release_image_without_its_signature_is_denied(
    release: Release, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = release.signed.rsplit("@", 1)[1]
    _copy(release, REPOSITORY, f"mirror/{REPOSITORY}", digest)
    mirrored = f"{release.registry.host}/mirror/{REPOSITORY}@{digest}"
    code, out = _check(release, mirrored, release.release_key, tmp_path, capsys)
    assert code == 1, out
    assert out.count("[MW-IMG-020]") == 1 and "has no signature" in out, out
    assert mirrored in out


def test_the_release_image_is_denied_by_a_policy_trusting_another_key(
    release: Release, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _check(release, release.signed, release.other_key, tmp_path, capsys)
    assert code == 1, out
    assert out.count("[MW-IMG-020]") == 1 and release.signed in out, out


def test_a_different_image_pushed_over_the_release_tag_is_denied(
    release: Release, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Someone with push rights moves the release tag: the signature names the release's
    digest, not the one the tag now names. (By tag only here, to show the tag is resolved
    and judged; docs/release.md tells users to pin the digest.)"""
    by_tag = f"{release.registry.host}/{REPOSITORY}:{TAG}"
    code, out = _check(release, by_tag, release.release_key, tmp_path, capsys, require_digest=False)
    assert code == 0, out  # the tag still names the signed release
    layer = Layer()
    layer.add_file("venv/bin/modelward", b"#!/bin/sh\nexit 0\n", mode=0o755)
    impostor = build_image(REPOSITORY, [layer], ImageConfig(user="65532"))
    moved = impostor.push(release.registry.client(), REPOSITORY, TAG)
    assert moved != release.signed.rsplit("@", 1)[1]
    code, out = _check(release, by_tag, release.release_key, tmp_path, capsys, require_digest=False)
    assert code == 1, out
    assert out.count("[MW-IMG-020]") == 1 and "has no signature" in out, out
    # Pinned to the new digest, the same denial; the release digest still passes.
    pinned = f"{release.registry.host}/{REPOSITORY}@{moved}"
    code, out = _check(release, pinned, release.release_key, tmp_path, capsys)
    assert code == 1 and "[MW-IMG-020]" in out, out
    assert _check(release, release.signed, release.release_key, tmp_path, capsys)[0] == 0
