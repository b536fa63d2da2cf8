"""`modelward check`: the CI contract — exit codes, JSON findings, clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelward.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "manifests" / "examples"


def test_examples_are_denied_with_json_findings(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "check",
            "-f",
            str(EXAMPLES / "workloads"),
            "--policy",
            str(EXAMPLES / "policies"),
            "--output",
            "json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    denied = {(f["resource"]["name"], f["rule"]) for f in out["findings"] if f["action"] == "deny"}
    assert ("llm-bad", "MW-SEC-001") in denied and ("llm-public", "MW-TLS-002") in denied
    assert not [f for f in out["findings"] if f["resource"]["name"] == "llm-good"]
    finding = out["findings"][0]
    assert set(finding) >= {"resource", "rule", "policy", "mode", "container", "message", "fix"}


def test_clean_manifests_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "check",
            "-f",
            str(EXAMPLES / "workloads" / "good-deployment.yaml"),
            "-f",
            str(EXAMPLES / "workloads" / "00-namespace.yaml"),
            "--policy",
            str(EXAMPLES / "policies"),
        ]
    )
    assert code == 0, capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("a: [unclosed", "cannot read YAML"),
        ("- just\n- a list\n", "not a Kubernetes object"),
    ],
)
def test_unusable_manifests_exit_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, words: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    code = main(["check", "-f", str(bad), "--policy", str(EXAMPLES / "policies")])
    assert code == 2 and words in capsys.readouterr().err


def test_broken_policy_exits_two_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "apiVersion: modelward.io/v1alpha1\nkind: ClusterModelPolicy\nmetadata: {name: p}\n"
        "spec:\n  match: {namespaces: [a]}\n  images: {requireDigests: true}\n"
    )
    code = main(["check", "-f", str(EXAMPLES / "workloads"), "--policy", str(policy)])
    err = capsys.readouterr().err
    assert code == 2 and "spec.images" in err and "unknown field" in err and "requireDigests" in err


def test_missing_paths_and_no_policies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["check", "-f", str(tmp_path / "nope"), "--policy", str(EXAMPLES / "policies")]) == 2
    )
    assert "no such file" in capsys.readouterr().err
    assert (
        main(
            [
                "check",
                "-f",
                str(EXAMPLES / "workloads"),
                "--policy",
                str(EXAMPLES / "workloads" / "good-deployment.yaml"),
            ]
        )
        == 2
    )
    assert "no ClusterModelPolicy" in capsys.readouterr().err
