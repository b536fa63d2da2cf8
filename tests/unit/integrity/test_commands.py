"""The CLI subcommands: exit codes, JSON output, the verify-pod termination message."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest

from modelward.integrity.commands import main
from modelward.integrity.result import parse_termination_message

from .conftest import make_key, make_model, requires_model_signing, sign_key_cli


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("cli")
    model = make_model(base)
    key = make_key(base, "k")
    sign_key_cli(model, key, model / "model.sig")
    return model, key.public


@pytest.mark.slow
@requires_model_signing
def test_verify_json_and_exit_codes(
    signed: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model, pub = signed
    assert main(["verify", str(model), "--public-key", str(pub), "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["result"] == "verified" and doc["signer"]["fingerprint"].startswith("sha256:")
    assert doc["subject"]["digest"].startswith("sha256:") and len(doc["files"]) == 5


@pytest.mark.slow
@requires_model_signing
def test_verify_rejected_and_unusable(
    signed: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, pub = signed
    other = make_key(tmp_path, "other")
    assert main(["verify", str(model), "--public-key", str(other.public)]) == 1
    assert "REJECTED" in capsys.readouterr().out
    assert main(["verify", str(model), "--public-key", str(tmp_path / "missing.pub")]) == 2
    assert main(["verify", str(model)]) == 2
    (tmp_path / "garbage.sig").write_text("{}")
    assert (
        main(
            [
                "verify",
                str(model),
                "--signature",
                str(tmp_path / "garbage.sig"),
                "--public-key",
                str(pub),
            ]
        )
        == 2
    )


@pytest.mark.slow
@requires_model_signing
def test_verify_pod_writes_termination_message(signed: tuple[Path, Path], tmp_path: Path) -> None:
    model, pub = signed
    log = tmp_path / "termination-log"
    code = main(
        [
            "verify-pod",
            "--model-path",
            str(model),
            "--signature",
            str(model / "model.sig"),
            "--public-key",
            str(pub),
            "--termination-log",
            str(log),
            "--policy",
            "ns/require-signed",
        ]
    )
    assert code == 0
    result = parse_termination_message(log.read_text())
    assert result.result == "verified" and result.scan == "clean" and result.files == 5
    assert result.policy == "ns/require-signed" and result.digest is not None


def test_a_tampered_model_is_reported_under_its_own_digest_not_the_signed_one(
    signed: tuple[Path, Path], tmp_path: Path
) -> None:
    """The inventory keys records by digest: a rejected copy must not land on the genuine
    model's record (found on a real node: both showed as one model, last result rejected)."""
    model, pub = signed
    copy = tmp_path / "copy"
    shutil.copytree(model, copy)
    first = sorted(p for p in copy.iterdir() if p.is_file() and p.name != "model.sig")[0]
    first.write_bytes(first.read_bytes() + b"tampered")
    digests = {}
    for name, path in (("genuine", model), ("tampered", copy)):
        log = tmp_path / f"{name}.log"
        main(
            [
                "verify-pod",
                "--model-path",
                str(path),
                "--signature",
                str(path / "model.sig"),
                "--public-key",
                str(pub),
                "--termination-log",
                str(log),
            ]
        )
        digests[name] = parse_termination_message(log.read_text())
    assert digests["genuine"].result == "verified" and digests["tampered"].result == "rejected"
    assert digests["tampered"].digest is not None
    assert digests["tampered"].digest != digests["genuine"].digest


@pytest.mark.slow
@requires_model_signing
def test_verify_pod_unsafe_payload_fails(tmp_path: Path) -> None:
    model = make_model(tmp_path)
    # a protocol-0 pickle that imports os.system (built by hand, never loaded)
    (model / "extra.pkl").write_bytes(b"cos\nsystem\n(S'id'\ntR.")
    key = make_key(tmp_path, "k")
    sign_key_cli(model, key, model / "model.sig")
    log = tmp_path / "log"
    code = main(
        [
            "verify-pod",
            "--model-path",
            str(model),
            "--signature",
            str(model / "model.sig"),
            "--public-key",
            str(key.public),
            "--termination-log",
            str(log),
        ]
    )
    result = parse_termination_message(log.read_text())
    assert code == 1 and result.result == "verified" and result.scan == "unsafe"
    assert "extra.pkl" in result.reason
    code = main(
        [
            "verify-pod",
            "--model-path",
            str(model),
            "--signature",
            str(model / "model.sig"),
            "--public-key",
            str(key.public),
            "--no-scan",
            "--termination-log",
            str(log),
        ]
    )
    assert code == 0 and parse_termination_message(log.read_text()).scan == "skipped"


def test_verify_pod_error_still_writes_message(tmp_path: Path) -> None:
    log = tmp_path / "log"
    code = main(
        [
            "verify-pod",
            "--model-path",
            str(tmp_path / "nope"),
            "--signature",
            str(tmp_path / "nope.sig"),
            "--public-key",
            str(tmp_path / "nope.pub"),
            "--termination-log",
            str(log),
        ]
    )
    result = parse_termination_message(log.read_text())
    assert code == 2 and result.result == "error" and result.reason


def test_scan_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps({"a": [1, 2]}))
    assert main(["scan", str(tmp_path / "ok.pkl")]) == 0
    (tmp_path / "bad.bin").write_bytes(b"cposix\nsystem\n(S'id'\ntR.")
    assert main(["scan", str(tmp_path), "--output", "json"]) == 1
    out = capsys.readouterr().out
    doc = json.loads(out[out.index("{") :])
    assert doc["result"] == "unsafe" and doc["findings"][0]["global"] == "posix.system"
    assert main(["scan", str(tmp_path / "does-not-exist")]) == 2


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("verify", "scan", "verify-pod"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "example" in capsys.readouterr().out


def test_unreadable_subfolder_is_named_and_the_rest_is_scanned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests run as root, where ``chmod 000`` does not stop reads, so ``os.scandir`` is made to
    refuse one folder with the PermissionError another user would get."""
    for name in ("a", "locked", "z"):
        (tmp_path / name).mkdir()
    (tmp_path / "a" / "ok.pkl").write_bytes(pickle.dumps({"a": 1}))
    (tmp_path / "locked" / "hidden.pkl").write_bytes(pickle.dumps({"a": 1}))
    (tmp_path / "z" / "ok.pkl").write_bytes(pickle.dumps([1, 2]))
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if Path(path) == tmp_path / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert main(["scan", str(tmp_path), "--output", "json"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["result"] == "error"
    assert doc["errors"] == [
        f"{tmp_path / 'locked'}: cannot list folder: Permission denied; its files were not scanned"
    ]
    scanned = {f["path"] for f in doc["files"] if "error" not in f}
    assert scanned == {str(tmp_path / "a" / "ok.pkl"), str(tmp_path / "z" / "ok.pkl")}
    # a finding elsewhere still makes it unsafe (1); the unreadable folder is still named
    (tmp_path / "z" / "bad.pkl").write_bytes(b"cposix\nsystem\n(S'id'\ntR.")
    assert main(["scan", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"ERROR  {tmp_path / 'locked'}: cannot list folder" in out and "UNSAFE" in out


def test_nested_zip_is_not_clean_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from .scanning.test_hostile import nested_zip

    bomb = tmp_path / "model.zip"
    bomb.write_bytes(nested_zip(2, 8))
    assert main(["scan", str(bomb)]) == 1
    assert "archive-bomb" in capsys.readouterr().out
    assert main(["scan", str(bomb), "--max-expansion", "0"]) == 2
    assert "--max-expansion must be at least 1" in capsys.readouterr().err
