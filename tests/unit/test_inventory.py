"""The inventory renders as a valid CycloneDX 1.6 ML-BOM (validated by the CycloneDX library)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from modelward.cli import main
from modelward.inventory import render_cyclonedx, render_json, render_text

ITEMS = [
    {
        "metadata": {"name": "sha256-aa", "namespace": "serving"},
        "spec": {
            "digest": "sha256:" + "aa" * 32,
            "signer": "key:1234",
            "files": 4,
            "scan": "clean",
            "lastResult": "verified",
            "firstSeen": "2026-11-25T10:00:00Z",
            "lastSeen": "2026-11-25T11:00:00Z",
            "verifications": 3,
            "policies": ["ClusterModelPolicy p"],
            "workloads": [{"kind": "Deployment", "name": "llm"}],
        },
    },
]


def test_cyclonedx_is_valid_and_pins_the_digest() -> None:
    text = render_cyclonedx(ITEMS)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    (component,) = json.loads(text)["components"]
    assert component["type"] == "machine-learning-model" and component["name"] == "Deployment/llm"
    assert component["hashes"] == [{"alg": "SHA-256", "content": "aa" * 32}]


def test_empty_inventory_is_valid_too() -> None:
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(render_cyclonedx([])) is None
    assert render_text([]) == "no deployed models recorded yet"
    assert json.loads(render_json(ITEMS))["models"][0]["digest"] == "sha256:" + "aa" * 32


# --------------------------------------------------------------------------- unusable clusters


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kubeconfig(server: str) -> str:
    return (
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: '{server}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n"
    for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "cannot load cluster credentials"),
        ("clusters: [unclosed", "not valid YAML"),
        ("- a\n- list\n", "not a kubeconfig map"),
        ("apiVersion: v1\nkind: Config\n", "cannot load cluster credentials"),
        (ALIAS_BOMB, "aliases"),
        ("UNREACHABLE", "cannot reach the API server"),
    ],
)
def test_unusable_kubeconfig_or_cluster_exits_two_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    words: str,
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    if content == "UNREACHABLE":
        content = _kubeconfig(f"http://127.0.0.1:{_free_port()}")
    if content is not None:
        kubeconfig.write_text(content)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    code = main(["inventory"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and words in err and "kubeconfig" in err.lower()
