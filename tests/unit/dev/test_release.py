"""The release: lock files with hashes that the Dockerfile and the image builder use, base
images pinned by digest, a slim verifier image that really verifies, and a CycloneDX SBOM of
modelward's image made from the lock file."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from modelward_dev.images import (
    LOCK_FILE,
    VERIFIER_REQUIREMENTS,
    ImageBuildError,
    _runtime_distributions,
    locked_versions,
    verifier_image,
)

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = (ROOT / "operator" / "Dockerfile").read_text()
BIN = Path(sys.executable).parent


def _requirements(lock: Path) -> dict[str, list[str]]:
    """``{name: [hashes]}`` of a pip lock file (continuation lines joined)."""
    text = lock.read_text().replace("\\\n", " ")
    out = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==\S+", line)
        if match:
            out[match.group(1)] = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
    return out


@pytest.mark.parametrize("lock", ["requirements.lock", "verifier.lock", "build.lock"])
def test_every_locked_package_has_a_version_and_hashes(lock: str) -> None:
    requirements = _requirements(ROOT / "operator" / lock)
    assert requirements
    assert all(hashes for hashes in requirements.values()), requirements


def test_the_lock_holds_exactly_the_runtime_closure_at_the_installed_versions() -> None:
    """_runtime_distributions refuses a venv that differs from the lock; here they agree, and
    the lock holds nothing the operator does not need (no test tools)."""
    closure = {
        re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version
        for d in _runtime_distributions(ROOT)
        if d.metadata["Name"].lower() != "modelward"
    }
    assert closure == locked_versions(ROOT / LOCK_FILE)
    verifier = locked_versions(ROOT / "operator" / "verifier.lock")
    assert set(VERIFIER_REQUIREMENTS) <= set(verifier)
    assert all(closure[name] == version for name, version in verifier.items())
    assert not {"kubernetes", "kopf", "aiohttp", "pyyaml"} & set(verifier)


def test_an_image_built_from_a_venv_that_differs_from_the_lock_is_refused(tmp_path: Path) -> None:
    (tmp_path / "operator").mkdir()
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "0"\ndependencies = ["cryptography"]\n'
    )
    (tmp_path / LOCK_FILE).write_text("cryptography==0.0.1 \\\n    --hash=sha256:" + "0" * 64)
    with pytest.raises(ImageBuildError, match=r"pins 0\.0\.1"):
        _runtime_distributions(tmp_path)


def test_the_dockerfile_installs_from_the_locks_and_pins_its_bases_by_digest() -> None:
    bases = re.findall(r"^ARG (?:BUILD|RUNTIME)_IMAGE=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert len(bases) == 2
    assert all(re.fullmatch(r"[^@\s]+@sha256:[0-9a-f]{64}", base) for base in bases), bases
    installs = [line for line in DOCKERFILE.splitlines() if "pip install" in line]
    from_locks = [line for line in installs if " -r operator/" in line]
    # every install from a file requires hashes; the only other install is modelward itself
    assert from_locks and all("--require-hashes" in line for line in from_locks)
    assert all("--no-deps" in line for line in installs)
    for lock in ("requirements.lock", "verifier.lock", "build.lock"):
        assert f"-r operator/{lock}" in DOCKERFILE
    assert re.search(r"^FROM \$\{RUNTIME_IMAGE\} AS verifier$", DOCKERFILE, re.MULTILINE)


@pytest.mark.slow
def test_the_verifier_image_is_slim_and_verifies_a_blake3_signed_model(tmp_path: Path) -> None:
    """Its /venv alone (no kubernetes, kopf, aiohttp, yaml) runs verify-pod end to end."""
    from tests.unit.integrity.conftest import make_key, make_model, sign_api

    image = verifier_image()
    root = tmp_path / "image"
    names: set[str] = set()
    for blob in image.blobs.values():
        if blob[:2] == b"\x1f\x8b":
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
                names |= set(tar.getnames())
                tar.extractall(root, filter="tar")
    site = "venv/lib/python3.11/site-packages"
    packages = {n.split("/")[4] for n in names if n.startswith(site + "/") and n.count("/") > 4}
    assert {"modelward", "cryptography", "blake3"} <= packages
    assert not {"kubernetes", "kopf", "aiohttp", "yaml", "prometheus_client"} & packages
    config = json.loads(image.config)["config"]
    assert config["User"] == "65532:65532"

    model = make_model(tmp_path)
    key = make_key(tmp_path, "k")
    sign_api(model, key, model / "model.sig", hashing="blake3")
    log = tmp_path / "log"
    script = (
        "import sys, runpy; sys.path[:0] = [sys.argv.pop(1)]; "
        "sys.argv[0] = 'modelward'; runpy.run_module('modelward', run_name='__main__')"
    )
    done = subprocess.run(
        [
            "/usr/bin/python3.11",
            "-I",  # isolated: neither this venv nor PYTHONPATH, only the image's site-packages
            "-c",
            script,
            str(root / site),
            "verify-pod",
            "--model-path",
            str(model),
            "--signature",
            str(model / "model.sig"),
            "--public-key",
            str(key.public),
            "--termination-log",
            str(log),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"scan":"clean"' in log.read_text().replace(" ", "")


@pytest.mark.slow
def test_make_sbom_describes_the_locked_packages(tmp_path: Path) -> None:
    out = tmp_path / "sbom.cdx.json"
    done = subprocess.run(
        [
            str(BIN / "cyclonedx-py"),
            "requirements",
            str(ROOT / LOCK_FILE),
            "--pyproject",
            str(ROOT / "pyproject.toml"),
            "--mc-type",
            "application",
            "--output-reproducible",
            "--of",
            "JSON",
            "--validate",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    bom = json.loads(out.read_text())
    assert bom["bomFormat"] == "CycloneDX" and bom["metadata"]["component"]["name"] == "modelward"
    components = {
        re.sub(r"[-_.]+", "-", c["name"]).lower(): c["version"] for c in bom["components"]
    }
    assert components == locked_versions(ROOT / LOCK_FILE)
    assert all(c["purl"].startswith("pkg:pypi/") for c in bom["components"])
    hashed = [c for c in bom["components"] if c.get("externalReferences")]
    assert len(hashed) == len(bom["components"])
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^sbom:", makefile, re.MULTILINE) and "requirements.lock" in makefile
