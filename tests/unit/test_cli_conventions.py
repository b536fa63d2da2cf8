"""The CLI as kubectl users expect it: help with examples and defaults on every command,
``-o json|yaml`` everywhere, ``-f -`` for stdin, ``-n``, and one exit-code contract
(0 ok / 1 policy failure / 2 usage or environment) on every command's bad-input path."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelward.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "manifests" / "examples"
WORKLOADS, POLICIES = EXAMPLES / "workloads", str(EXAMPLES / "policies")
#: Commands without -o: `run` is a server (its output is its log, --log-format text|json) and
#: `completion` prints a shell script.
NO_OUTPUT = {"run", "completion"}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("modelward has no subcommands")


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_every_command_and_the_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = _help([], capsys)
    for name in _subparsers():
        assert re.search(rf"^\s+{re.escape(name)}\s", text, re.M), name
    assert "exit codes" in text and "examples:" in text and "-o json|yaml" in text


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_command_has_a_description_examples_exit_codes_and_shows_defaults(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sub = _subparsers()[command]
    text = _help([command], capsys)
    assert sub.description and " ".join(sub.description.split()[:4]) in " ".join(text.split())
    assert re.search(r"^examples?:", text, re.M), f"{command} --help shows no example"
    assert "exit codes" in text, f"{command} --help does not state its exit codes"
    flat = " ".join(text.split())
    for action in sub._actions:
        default = action.default
        if (
            not action.option_strings
            or action.help == argparse.SUPPRESS
            or default in (None, False, argparse.SUPPRESS)
            or (isinstance(default, list) and not default)
            or isinstance(action, argparse._HelpAction)
        ):
            continue
        assert f"(default: {default})" in flat, f"{command} {action.option_strings[0]}: no default"
        assert action.help, f"{command} {action.option_strings[0]} has no help"


@pytest.mark.parametrize("command", sorted(set(_subparsers()) - NO_OUTPUT))
def test_every_command_offers_o_json_and_yaml(command: str) -> None:
    sub = _subparsers()[command]
    output = next(a for a in sub._actions if "--output" in a.option_strings)
    assert "-o" in output.option_strings
    assert {"json", "yaml"} <= set(output.choices or ())


# --------------------------------------------------------------------------- check


def _check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["check", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_check_yaml_equals_json(capsys: pytest.CaptureFixture[str]) -> None:
    _, as_json, _ = _check(capsys, "-f", str(WORKLOADS), "--policy", POLICIES, "-o", "json")
    code, as_yaml, _ = _check(capsys, "-f", str(WORKLOADS), "--policy", POLICIES, "-o", "yaml")
    assert code == 1 and yaml.safe_load(as_yaml) == json.loads(as_json)


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_check_reads_manifests_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    piped = b"---\n".join(
        (WORKLOADS / name).read_bytes() for name in ("00-namespace.yaml", "bad-deployment.yaml")
    )
    _stdin(monkeypatch, piped)
    code, out, _ = _check(capsys, "-f", "-", "--policy", POLICIES, "-o", "json")
    findings = json.loads(out)["findings"]
    assert code == 1 and findings
    assert {f["source"].split("#")[0] for f in findings} == {"<stdin>"}
    assert {f["resource"]["name"] for f in findings if f["action"] == "deny"} == {"llm-bad"}


def test_check_reads_policies_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, b"---\n".join(p.read_bytes() for p in sorted(Path(POLICIES).iterdir())))
    code, _, err = _check(capsys, "-f", str(WORKLOADS), "--policy", "-")
    assert code == 1, err


def test_stdin_named_twice_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, b"")
    code, _, err = _check(capsys, "-f", "-", "--policy", "-")
    assert code == 2 and err.count("\n") == 1 and "more than once" in err


def test_unreadable_stdin_exits_two(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, b"\xff\xfe not utf-8")
    code, _, err = _check(capsys, "-f", "-", "--policy", POLICIES)
    assert code == 2 and "<stdin>" in err and "UTF-8" in err


def _without_namespace(tmp_path: Path) -> Path:
    manifest = tmp_path / "bad.yaml"
    text = (WORKLOADS / "bad-deployment.yaml").read_text()
    manifest.write_text(text.replace("  namespace: serving-demo\n", "", 1))
    assert "namespace:" not in manifest.read_text().split("spec:")[0]
    return manifest


def test_check_n_gives_namespace_less_manifests_their_namespace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, namespace = _without_namespace(tmp_path), str(WORKLOADS / "00-namespace.yaml")
    base = ["-f", str(manifest), "-f", namespace, "--policy", POLICIES, "-o", "json"]
    code, out, _ = _check(capsys, *base)
    assert code == 0 and {f["resource"]["namespace"] for f in json.loads(out)["findings"]} <= {
        "default"
    }
    code, out, _ = _check(capsys, *base, "-n", "serving-demo")
    denied = [f for f in json.loads(out)["findings"] if f["action"] == "deny"]
    assert code == 1 and denied and {f["resource"]["namespace"] for f in denied} == {"serving-demo"}


def test_check_n_refuses_a_manifest_in_another_namespace(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = str(WORKLOADS / "bad-deployment.yaml")
    code, _, err = _check(capsys, "-f", bad, "--policy", POLICIES, "-n", "elsewhere")
    assert code == 2 and err.count("\n") == 1
    assert "'serving-demo'" in err and "'elsewhere'" in err and "-n serving-demo" in err


def test_check_takes_files_as_arguments_too(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _check(capsys, str(WORKLOADS), "--policy", POLICIES, "-o", "json")
    assert code == 1 and json.loads(out)["checked"] > 0
    code, _, err = _check(capsys, "--policy", POLICIES)
    assert code == 2 and "no manifests given" in err


# --------------------------------------------------------------------------- other commands


def test_crds_json_is_a_list_of_the_yaml_documents(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds"]) == 0
    documents = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert main(["crds", "-o", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["kind"] == "List" and listed["items"] == documents
    assert {d["kind"] for d in documents} == {"CustomResourceDefinition"}


def test_crds_write_to_an_unwritable_folder_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = tmp_path / "repo"
    blocked.write_text("a file where the repository root should be")
    assert main(["crds", "--write", "--repo-root", str(blocked)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "modelward crds: error:" in err and str(blocked) in err


def test_crds_write_lists_what_it_wrote_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["crds", "--write", "--repo-root", str(tmp_path), "-o", "json"]) == 0
    written = json.loads(capsys.readouterr().out)["written"]
    assert written and all(Path(p).is_file() for p in written)


def test_run_with_invalid_settings_exits_two_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--webhook-port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "modelward run: error:" in err and "port" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "--policy", POLICIES, "-o", "xml"],
        ["inventory", "-o", "table"],
        ["completion", "powershell"],
        ["scan"],
        ["no-such-command"],
    ],
)
def test_usage_errors_exit_two(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and "usage:" in capsys.readouterr().err


def test_scan_yaml_and_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, b"cposix\nsystem\n(S'id'\ntR.")
    assert main(["scan", "-", "-o", "yaml"]) == 1
    report = yaml.safe_load(capsys.readouterr().out)
    assert report["result"] == "unsafe"
    assert report["findings"][0]["path"] == "<stdin>"
    assert report["findings"][0]["global"] == "posix.system"


def test_scan_missing_path_exits_two_in_yaml_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", str(tmp_path / "nope"), "-o", "yaml"]) == 2
    assert yaml.safe_load(capsys.readouterr().out)["result"] == "error"


def test_verify_without_trust_exits_two_with_a_yaml_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "model.sig").write_text("{}")
    assert main(["verify", str(tmp_path), "-o", "yaml"]) == 2
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc["result"] == "error" and "--public-key" in doc["reason"]


# --------------------------------------------------------------------------- inventory


ITEMS: list[dict[str, Any]] = [
    {
        "metadata": {"namespace": "serving", "name": "m1"},
        "spec": {"digest": "sha256:" + "aa" * 32, "signer": "release", "lastResult": "verified"},
    }
]


def test_inventory_yaml_and_kubeconfig_context_are_passed_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: dict[str, Any] = {}

    def fetch(namespace: str | None, **kwargs: Any) -> list[dict[str, Any]]:
        seen.update(namespace=namespace, **kwargs)
        return ITEMS

    monkeypatch.setattr("modelward.inventory.fetch_deployed_models", fetch)
    argv = ["inventory", "--kubeconfig", "/k", "--context", "prod", "-n", "serving", "-o", "yaml"]
    assert main(argv) == 0
    assert seen == {"namespace": "serving", "kubeconfig": "/k", "context": "prod"}
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc["models"][0]["digest"] == "sha256:" + "aa" * 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kubeconfig(path: Path, contexts: dict[str, str]) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": next(iter(contexts)),
                "clusters": [{"name": n, "cluster": {"server": s}} for n, s in contexts.items()],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": n, "context": {"cluster": n, "user": "u"}} for n in contexts],
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--kubeconfig", "MISSING"], "no such file"),
        (["--context", "nope"], "nope"),
        (["--context", "unreachable"], "cannot reach the API server"),
        ([], "cannot reach the API server"),
    ],
)
def test_inventory_kubeconfig_and_context_failures_exit_two_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    words: str,
) -> None:
    """--kubeconfig wins over $KUBECONFIG and the in-cluster account; --context picks the
    cluster; whatever fails is exit 2 and one line, never a traceback or exit 1."""
    dead = f"http://127.0.0.1:{_free_port()}"
    config = _kubeconfig(tmp_path / "kc", {"default": dead, "unreachable": dead})
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")  # --kubeconfig must win
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "not-this-one"))
    args = [str(tmp_path / "missing") if a == "MISSING" else a for a in extra]
    if "--kubeconfig" not in args:
        args += ["--kubeconfig", str(config)]
    code = main(["inventory", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err
    if "--context" in args:
        assert f"context {args[args.index('--context') + 1]}" in err or "nope" in err


def test_unreadable_kubeconfig_named_by_flag_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _kubeconfig(tmp_path / "kc", {"c": "http://127.0.0.1:1"})
    config.chmod(0)
    if os.access(config, os.R_OK):  # root reads anything: make it a folder instead
        config.chmod(stat.S_IRUSR | stat.S_IWUSR)
        config.unlink()
        config.mkdir()
    assert main(["inventory", "--kubeconfig", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(config) in err


def test_every_command_is_documented_in_docs_cli() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    missing = [name for name in _subparsers() if f"\n## modelward {name}\n" not in text]
    assert not missing, f"add a section to docs/cli.md for: {missing}"


def test_run_with_a_missing_kubeconfig_exits_two_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--kubeconfig", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err and str(tmp_path / "nope") in err
