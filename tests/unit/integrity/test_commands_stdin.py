"""`modelward verify --signature -` and `-o yaml`: the bundle piped in, the result as YAML."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from modelward.cli import main

from .conftest import make_key, make_model, requires_model_signing, sign_key_cli


@pytest.mark.slow
@requires_model_signing
def test_verify_reads_the_signature_from_stdin_and_prints_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = make_model(tmp_path)
    key = make_key(tmp_path, "k")
    signature = tmp_path / "model.sig"  # outside the model: nothing at MODEL_PATH/model.sig
    sign_key_cli(model, key, signature)
    argv = ["verify", str(model), "--public-key", str(key.public)]
    assert main([*argv, "--signature", str(signature), "-o", "json"]) == 0
    from_file = json.loads(capsys.readouterr().out)

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(signature.read_bytes())))
    assert main([*argv, "--signature", "-", "-o", "yaml"]) == 0
    from_stdin = yaml.safe_load(capsys.readouterr().out)
    assert from_stdin["result"] == "verified"
    assert from_stdin["subject"] == from_file["subject"]
    assert from_stdin["signer"] == from_file["signer"]

    other = make_key(tmp_path, "other")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(signature.read_bytes())))
    assert main(["verify", str(model), "--public-key", str(other.public), "--signature", "-"]) == 1


def test_verify_refuses_a_huge_stdin_signature_with_exit_two(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = make_key(tmp_path, "k")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"x" * (17 << 20))))
    argv = ["verify", str(tmp_path), "--public-key", str(key.public), "--signature", "-"]
    assert main([*argv, "-o", "json"]) == 2
    assert "not a signature bundle" in json.loads(capsys.readouterr().out)["reason"]
