"""``modelward access-review -f``: the review computed offline from manifests."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelward.cli import main

RBAC = "rbac.authorization.k8s.io/v1"


def _policy(**access: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": "ClusterModelPolicy",
        "metadata": {"name": "access"},
        "spec": {
            "match": {"namespaceSelector": {"matchLabels": {"serving": "true"}}},
            "isolation": {},  # other sections do not matter to the review
            "access": access,
        },
    }


def _objects(subject: dict[str, Any], **access: Any) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "llm", "labels": {"serving": "true"}},
        },
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}},
        _policy(**access),
        {
            "apiVersion": RBAC,
            "kind": "ClusterRole",
            "metadata": {"name": "debug"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods/exec", "pods/attach"], "verbs": ["create"]}
            ],
        },
        {
            "apiVersion": RBAC,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "debug"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "debug",
            },
            "subjects": [subject],
        },
    ]


def _write(tmp_path: Path, objects: list[dict[str, Any]]) -> str:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    return str(path)


SRE = {"kind": "Group", "name": "sre", "apiGroup": "rbac.authorization.k8s.io"}
JOBS = {
    "jobFunctions": [
        {"name": "sre", "groups": ["sre"], "permissions": ["pods/exec", "pods/attach"]}
    ]
}


def test_violations_exit_1_and_name_the_binding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    intruder = {"kind": "ServiceAccount", "name": "bot", "namespace": "tools"}
    code = main(["access-review", "-f", _write(tmp_path, _objects(intruder, **JOBS)), "-o", "json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 1
    assert document["namespaces"] == ["llm"]  # the unselected namespace is not reviewed
    assert document["violations"] == 2
    row = document["rows"][0]
    assert row["binding"] == "ClusterRoleBinding debug" and row["role"] == "ClusterRole debug"
    assert row["violates"] == ["ClusterModelPolicy access"]


def test_allowed_holders_exit_0_in_every_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, _objects(SRE, **JOBS))
    assert main(["access-review", "-f", path]) == 0
    table = capsys.readouterr().out
    assert "allowed (sre)" in table and "0 violations" in table
    assert main(["access-review", "-f", path, "-o", "csv", "-n", "llm"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["permission"] for r in rows} == {"pods/exec", "pods/attach"}
    assert {r["job_function"] for r in rows} == {"sre"}


def test_a_broken_policy_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    objects = _objects(SRE, jobFunctions=[{"name": "x", "permissions": ["root"]}])
    assert main(["access-review", "-f", _write(tmp_path, objects)]) == 2
    assert "access-review: error:" in capsys.readouterr().err
