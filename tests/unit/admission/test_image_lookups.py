"""Which reviews get registry look-ups, and with whose credentials (admission/images.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from modelward.admission.images import _pull_secret_credentials
from modelward.errors import ConfigurationError
from modelward.registry.auth import Credentials, CredentialStore
from modelward.settings import Settings


def _secret(host: str, user: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{user}:pw".encode()).decode()
    config = json.dumps({"auths": {host: {"auth": auth}}}).encode()
    return {"data": {".dockerconfigjson": base64.b64encode(config).decode()}}


class Reader:
    def __init__(self) -> None:
        self.secrets = {
            "pod-secret": _secret("r.io", "pod"),
            "sa-secret": _secret("r.io", "account"),
            "sa-only": _secret("q.io", "account"),
            "broken": {"data": {".dockerconfigjson": base64.b64encode(b"{no").decode()}},
        }
        self.read: list[str] = []

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.read.append(name)
        return self.secrets.get(name)

    def read_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        if name != "runner":
            return None
        return {"imagePullSecrets": [{"name": "sa-secret"}, {"name": "sa-only"}]}


def test_the_pods_secrets_come_before_its_service_accounts_like_the_kubelet() -> None:
    reader = Reader()
    spec = {
        "serviceAccountName": "runner",
        "imagePullSecrets": [{"name": "missing"}, {"name": "broken"}, {"name": "pod-secret"}],
    }
    store = CredentialStore(tuple(_pull_secret_credentials(reader, "ns", spec)))
    assert store.for_registry("r.io") == Credentials("pod", "pw")
    assert store.for_registry("q.io") == Credentials("account", "pw")
    assert reader.read == ["missing", "broken", "pod-secret", "sa-secret", "sa-only"]


def test_the_default_service_account_is_read_when_none_is_named() -> None:
    reader = Reader()
    assert _pull_secret_credentials(reader, "ns", {}) == []


def test_the_look_up_deadline_must_leave_time_to_evaluate(tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_text("x")
    (tmp_path / "tls.key").write_text("x")
    files = {"tls_cert_file": tmp_path / "tls.crt", "tls_key_file": tmp_path / "tls.key"}
    with pytest.raises(ConfigurationError, match="below --deadline"):
        Settings(**files, deadline_seconds=2.5, registry_lookup_deadline=2.5).validate()
    with pytest.raises(ConfigurationError, match="os/arch"):
        Settings(**files, registry_platform="amd64").validate()
    valid = Settings(**files, registry_lookup_deadline=1.0).validate()
    assert valid.registry_lookup_deadline == 1.0
