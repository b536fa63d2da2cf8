"""`modelward check`: the CI contract — exit codes, JSON findings, clear errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


# --------------------------------------------------------------------------- hostile input

POLICIES = str(EXAMPLES / "policies")


def billion_laughs(levels: int = 9) -> str:
    """The classic alias bomb: ~500 bytes that describe 9**levels strings."""
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n"
    text += '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    previous = "a"
    for name in "bcdefghijklmnop"[: levels - 1]:
        text += f"  {name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]\n"
        previous = name
    return text


@pytest.mark.parametrize("where", ["-f", "--policy"])
def test_alias_bomb_is_refused_with_exit_two_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    bomb = tmp_path / "lol.yaml"
    bomb.write_text(billion_laughs())
    assert len(bomb.read_bytes()) < 600
    args = {"-f": str(EXAMPLES / "workloads"), "--policy": POLICIES, where: str(bomb)}
    code = main(["check", "-f", args["-f"], "--policy", args["--policy"]])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "lol.yaml" in err and "aliases" in err and "explode" in err


def test_recursive_alias_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loop = tmp_path / "loop.yaml"
    loop.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: &d {a: *d}\n")
    assert main(["check", "-f", str(loop), "--policy", POLICIES]) == 2
    assert "recursive alias" in capsys.readouterr().err


def test_ordinary_anchors_and_merge_keys_still_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "anchors.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: serving-demo}\nspec:\n"
        "  containers:\n"
        "  - &base {name: a, image: 'vllm/vllm-openai:latest'}\n"
        "  - <<: *base\n    name: b\n"
    )
    namespace = str(EXAMPLES / "workloads" / "00-namespace.yaml")
    code = main(["check", "-f", str(manifest), "-f", namespace, "--policy", POLICIES, "-o", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["checked"] == 1
    assert {f["container"] for f in out["findings"] if f["rule"] == "MW-IMG-003"} >= {
        'container "a"',
        'container "b"',
    }


def test_deeply_nested_yaml_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 50_000)
    assert main(["check", "-f", str(deep), "--policy", POLICIES]) == 2
    assert "nest" in capsys.readouterr().err  # "nested too deeply" or libyaml's "nesting depth"


POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: serving}\n"
DEPLOYMENT = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: serving}\n"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (POD + "spec: [1, 2]\n", "Pod.spec is not a map"),
        (POD + "spec: {containers: {name: x, image: y}}\n", "spec.containers is not a non-empty"),
        (POD + "spec: {containers: []}\n", "spec.containers is not a non-empty"),
        (POD + "spec: {containers: [3]}\n", "spec.containers[0] is not a map"),
        (POD + "spec: {containers: [{image: y}]}\n", "spec.containers[0].name"),
        (POD + "spec: {containers: [{name: a, image: [y]}]}\n", "image is not a string"),
        (POD + "spec: {initContainers: 3, containers: [{name: a}]}\n", "initContainers"),
        ("apiVersion: v1\nkind: List\nitems: [3]\n", "items[0]: not a Kubernetes object"),
        ("apiVersion: v1\nkind: List\nitems: 3\n", "items is not a list"),
        ("42\n", "not a Kubernetes object"),
        ("apiVersion: v1\nkind: [Pod]\n", "not a Kubernetes object"),
        ("apiVersion: v1\nkind: Pod\nmetadata: [p]\nspec: {}\n", "metadata is not a map"),
        (POD.replace("name: p", "name: p, labels: [a]") + "spec: {}\n", "labels is not a map"),
        (DEPLOYMENT + "spec: {template: []}\n", "spec.template is missing or not a map"),
        (DEPLOYMENT + "spec: {replicas: 1}\n", "spec.template is missing or not a map"),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {selector: [a]}\n",
            "spec.selector is not a map",
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i}\n"
            "spec: {rules: [{http: {paths: [{backend: {service: x}}]}}]}\n",
            "service is not a map",
        ),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {}\n", "containers"),
    ],
)
def test_objects_the_engine_cannot_judge_exit_two_naming_the_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, words: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: serving}\n---\n" + content)
    code = main(["check", "-f", str(bad), "--policy", POLICIES])
    captured = capsys.readouterr()
    assert code == 2, captured.out
    assert captured.err.count("\n") == 1 and "bad.yaml#2" in captured.err
    assert words in captured.err and "Traceback" not in captured.err


def test_unreadable_subfolder_is_an_error_not_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests run as root, where chmod 000 does not stop reads: ``os.scandir`` is made to refuse
    one folder, as it would for another user."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "pod.yaml").write_text(POD + "spec: {containers: [{name: a}]}\n")
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if Path(path) == tmp_path / "b":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert main(["check", "-f", str(tmp_path), "--policy", POLICIES]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'b'}: cannot read folder" in err


@pytest.mark.parametrize("output", ["text", "json"])
def test_closed_output_pipe_is_quiet_and_keeps_the_verdict(output: str) -> None:
    """`modelward check … | head`: the reader has gone before anything is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "modelward",
                "check",
                "-f",
                str(EXAMPLES / "workloads"),
                "--policy",
                POLICIES,
                "-o",
                output,
            ],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
    finally:
        os.close(write_end)
    assert done.stderr == "" and done.returncode == 1


EXCEPTION = EXAMPLES / "exceptions" / "ingress-rate-limit.yaml"


def _ingress_rules(out: dict[str, Any]) -> dict[str, str]:
    return {
        f["rule"]: f["action"] for f in out["findings"] if f["resource"]["name"] == "llm-public"
    }


def test_exceptions_in_the_manifests_are_honoured_until_they_expire(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [
        "check",
        "-f",
        str(EXAMPLES / "workloads"),
        "-f",
        str(EXCEPTION),
        "--policy",
        str(EXAMPLES / "policies"),
        "-o",
        "json",
    ]
    main([*args, "--now", "2026-12-01T00:00:00Z"])
    out = json.loads(capsys.readouterr().out)
    assert _ingress_rules(out) == {"MW-TLS-002": "deny", "MW-TLS-003": "skip"}
    skipped = next(f for f in out["findings"] if f["action"] == "skip")
    assert skipped["exception"] == "serving-demo/llm-public-rate-limit"
    main([*args, "--now", "2027-01-31T00:00:00Z"])
    out = json.loads(capsys.readouterr().out)
    assert _ingress_rules(out) == {"MW-TLS-002": "deny", "MW-TLS-003": "deny"}
    expired = next(f for f in out["findings"] if f["rule"] == "MW-TLS-003")
    assert "matches but expired at 2027-01-31T00:00:00Z" in expired["notes"][0]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("rules: [MW-TLS-003]", "rules: [MW-TLS-999]"),
        ("rules: [MW-TLS-003]", "rules: ['*']"),
        ('expiresAt: "2027-01-31T00:00:00Z"', 'expiresAt: "2027-06-01T00:00:00Z"'),
    ],
)
def test_an_exception_the_cluster_would_refuse_is_unusable_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str, words: str
) -> None:
    broken = tmp_path / "exception.yaml"
    broken.write_text(EXCEPTION.read_text().replace(change, words))
    code = main(
        [
            "check",
            "-f",
            str(EXAMPLES / "workloads"),
            "-f",
            str(broken),
            "--policy",
            str(EXAMPLES / "policies"),
            "--now",
            "2026-12-01T00:00:00Z",
        ]
    )
    assert code == 2, capsys.readouterr()
