"""``modelward check --registry-lookups`` against the real registry (TLS, htpasswd)."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelward.cli import main
from modelward_dev.images import ImageConfig, Layer, build_image
from modelward_dev.registry import Credentials, LocalRegistry
from tests.unit.engine.builders import compliant_pod

pytestmark = pytest.mark.slow

USER = Credentials("ci", "ci-s3cret")


def write(path: Path, *documents: Any) -> str:
    path.write_text(yaml.safe_dump_all(documents))
    return str(path)


def test_check_looks_images_up_only_when_asked_and_says_what_it_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layer = Layer()
    layer.add_file("/bin/bash", b"\x7fELF", mode=0o755)
    image = build_image("ci", [layer], ImageConfig(), created=int(time.time()) - 40 * 86400)
    with LocalRegistry(tls=True, users=(USER,)) as registry:
        digest = image.push(registry.client(USER), "ci/app", "1.0")
        reference = f"{registry.host}/ci/app:1.0"
        pod = compliant_pod()
        pod["metadata"] = {"name": "app", "namespace": "serving-ci"}
        pod["spec"]["containers"][0]["image"] = reference
        manifests = write(tmp_path / "pod.yaml", pod)
        policy = {
            "apiVersion": "modelward.io/v1alpha1",
            "kind": "ClusterModelPolicy",
            "metadata": {"name": "images"},
            "spec": {
                "mode": "Enforce",
                "match": {"namespaces": ["serving-*"]},
                "images": {
                    "requireDigest": False,
                    "requireNonRootUser": True,
                    "forbiddenContents": {"shells": True},
                    "maxAgeDays": 30,
                },
            },
        }
        policies = write(tmp_path / "policy.yaml", policy)
        auth = base64.b64encode(f"{USER.username}:{USER.password}".encode()).decode()
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))

        # Off by default: no look-up, no finding from the rules that need one.
        assert main(["check", "-f", manifests, "--policy", policies]) == 0
        assert "IMAGE" not in capsys.readouterr().out

        args = [
            "check",
            "-f",
            manifests,
            "--policy",
            policies,
            "--registry-lookups",
            f"--registry-ca-bundle={registry.ca_path}",
            f"--registry-config={config}",
        ]
        assert main(args) == 1
        out = capsys.readouterr().out
        assert f"IMAGE {reference} -> {digest}" in out
        assert "user=root (unset)" in out and "forbidden=/bin/bash" in out
        for rule in ("MW-IMG-004", "MW-IMG-008", "MW-IMG-009"):
            assert f"[{rule}]" in out

        assert main([*args, "-o", "json"]) == 1
        document = json.loads(capsys.readouterr().out)
        assert document["images"][0]["digest"] == digest
        assert document["images"][0]["forbiddenPaths"] == ["/bin/bash"]

        # Without the CA the look-up fails, and the failure is judged (Deny by default).
        assert main([*args[:6], f"--registry-config={config}"]) == 1
        out = capsys.readouterr().out
        assert "look-up failed" in out and "[MW-IMG-010]" in out
