"""The real cosign (built by ``hack/build-cosign.sh``), driven against the harness's registry.

Signing works offline: key pairs made by ``cosign generate-key-pair`` (empty password), no
transparency log, no timestamp authority. Two layouts, as cosign v3 offers them:
``CLASSIC`` (the ``sha256-<hex>.sig`` / ``.att`` tags) and ``BUNDLE`` (a Sigstore bundle
attached as an OCI referrer; an empty signing config keeps it offline).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelward_dev.binaries import find_cosign

__all__ = ["BUNDLE", "CLASSIC", "Cosign", "vuln_predicate"]

CLASSIC = ("--new-bundle-format=false", "--use-signing-config=false", "--tlog-upload=false")
_EMPTY_SIGNING_CONFIG = "empty-signing-config.json"
BUNDLE = ("--signing-config", _EMPTY_SIGNING_CONFIG)


@dataclass
class Cosign:
    """cosign run in ``work`` (keys live there), trusting ``ca`` for the registry's TLS."""

    work: Path
    ca: Path
    binary: Path | None = None

    def __post_init__(self) -> None:
        self.binary = self.binary or find_cosign()
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / _EMPTY_SIGNING_CONFIG).write_text(
            json.dumps({"mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json"})
        )

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SSL_CERT_FILE": str(self.ca),
            "COSIGN_PASSWORD": "",
            "HOME": str(self.work),  # cosign keeps TUF metadata under $HOME
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), *args],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"cosign {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result

    def key_pair(self, name: str) -> tuple[Path, str]:
        """(private key path, public key PEM) of a new pair in ``work/name``."""
        folder = self.work / name
        folder.mkdir(exist_ok=True)
        subprocess.run(
            [str(self.binary), "generate-key-pair"],
            cwd=folder,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        return folder / "cosign.key", (folder / "cosign.pub").read_text()

    def sign(self, key: Path, reference: str, layout: Sequence[str] = BUNDLE) -> None:
        self.run("sign", "--key", str(key), "-y", *layout, reference)

    def attest_vulnerabilities(
        self,
        key: Path,
        reference: str,
        predicate: dict[str, Any],
        layout: Sequence[str] = BUNDLE,
    ) -> None:
        path = self.work / f"predicate-{abs(hash(reference))}.json"
        path.write_text(json.dumps(predicate))
        self.run(
            "attest", "--key", str(key), "--type", "vuln", "--predicate", str(path), "-y",
            *layout, reference,
        )  # fmt: skip

    def verify(self, public_key: str, reference: str, *, classic: bool) -> bool:
        """cosign's own verdict on an image signature (offline: no transparency log)."""
        key = self.work / f"verify-{abs(hash(public_key))}.pub"
        key.write_text(public_key)
        result = self.run(
            "verify", "--key", str(key), "--insecure-ignore-tlog", "--insecure-ignore-sct",
            *(("--new-bundle-format=false",) if classic else ()), reference,
            check=False,
        )  # fmt: skip
        return result.returncode == 0


def vuln_predicate(*findings: tuple[str, str]) -> dict[str, Any]:
    """A cosign vuln predicate whose result is Trivy's JSON report (``trivy image -f json``)."""
    return {
        "invocation": {"parameters": None, "uri": "", "event_id": "", "builder.id": ""},
        "scanner": {
            "uri": "pkg:github/aquasecurity/trivy@0.58.0",
            "version": "0.58.0",
            "db": {"uri": "", "version": ""},
            "result": {
                "SchemaVersion": 2,
                "Results": [
                    {
                        "Target": "image",
                        "Vulnerabilities": [
                            {"VulnerabilityID": i, "Severity": s, "PkgName": "openssl"}
                            for i, s in findings
                        ],
                    }
                ],
            },
        },
        "metadata": {
            "scanStartedOn": "2026-11-01T00:00:00Z",
            "scanFinishedOn": "2026-11-01T00:01:00Z",
        },
    }
