"""A fixed cluster for the evidence tests: what a ``ClusterReader`` would return."""

from __future__ import annotations

import datetime as dt
from typing import Any

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
READY = {"conditions": [{"type": "Ready", "status": "True", "reason": "Accepted"}]}


def policy(
    kind: str,
    name: str,
    spec: dict[str, Any],
    *,
    ready: bool = True,
    namespace: str | None = None,
    violations: dict[str, int] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    status: dict[str, Any] = (
        dict(READY)
        if ready
        else {"conditions": [{"type": "Ready", "status": "False", "message": "key not found"}]}
    )
    if violations:
        status["violations"] = violations
    return {"kind": kind, "metadata": meta, "spec": spec, "status": status}


class FakeReader:
    def __init__(
        self,
        objects: dict[str, list[dict[str, Any]]] | None = None,
        apiserver_pods: list[dict[str, Any]] | None = None,
        whoami: dict[str, Any] | None = None,
    ) -> None:
        self.objects = objects or {}
        self.pods = apiserver_pods or []
        self.me = whoami

    def server(self) -> str:
        return "https://127.0.0.1:6443"

    def version(self) -> str:
        return "v1.37.2"

    def list_objects(self, group: str, version: str, plural: str) -> list[dict[str, Any]]:
        return [dict(o) for o in self.objects.get(plural, [])]

    def kube_apiserver_pods(self) -> list[dict[str, Any]]:
        return self.pods

    def whoami(self) -> dict[str, Any] | None:
        return self.me


def populated() -> FakeReader:
    return FakeReader(
        {
            "clustermodelpolicies": [
                policy(
                    "ClusterModelPolicy",
                    "hosting",
                    {
                        "mode": "Enforce",
                        "match": {"namespaceSelector": {"matchLabels": {"tier": "serving"}}},
                        "isolation": {},
                        "images": {"mode": "Patch"},
                    },
                    violations={"denied": 4, "patched": 2, "warned": 0, "current": 1},
                ),
                policy(
                    "ClusterModelPolicy",
                    "integrity-audit",
                    {
                        "mode": "Audit",
                        "integrity": {"trustedSigners": []},
                    },
                ),
                policy(
                    "ClusterModelPolicy",
                    "broken-transport",
                    {
                        "transport": {},
                    },
                    ready=False,
                ),
            ],
            "modelpolicies": [
                policy("ModelPolicy", "team", {"secrets": {}}, namespace="serving"),
            ],
            "policyreports": [
                {
                    "metadata": {
                        "name": "modelward",
                        "namespace": "serving",
                        "labels": {"app.kubernetes.io/managed-by": "modelward"},
                    },
                    "results": [
                        {
                            "source": "modelward",
                            "policy": "hosting",
                            "rule": "MW-ISO-001",
                            "result": "fail",
                            "message": "runs as root | really",
                            "resources": [{"kind": "Pod", "name": "llm-0"}],
                        },
                        {
                            "source": "modelward",
                            "policy": "hosting",
                            "rule": "all",
                            "result": "pass",
                            "resources": [{"kind": "Pod", "name": "ok-0"}],
                        },
                        {
                            "source": "modelward",
                            "policy": "hosting",
                            "rule": "MW-IMG-001",
                            "result": "skip",
                            "message": "waived by serving/legacy",
                            "resources": [{"kind": "Pod", "name": "legacy-0"}],
                        },
                        {
                            "source": "kyverno",
                            "policy": "other",
                            "rule": "x",
                            "result": "fail",
                            "resources": [{"kind": "Pod", "name": "llm-0"}],
                        },
                    ],
                },
                {
                    "metadata": {"name": "kyverno", "namespace": "serving"},
                    "results": [{"source": "modelward", "result": "fail"}],
                },
            ],
            "modelpolicyexceptions": [
                {
                    "metadata": {"name": "legacy", "namespace": "serving"},
                    "spec": {
                        "policy": {"kind": "ClusterModelPolicy", "name": "hosting"},
                        "rules": ["MW-IMG-001"],
                        "workloads": {"names": ["legacy"]},
                        "justification": "vendor image, digest pinned next sprint",
                        "approvedBy": "ciso@example.com",
                        "ticket": "SEC-42",
                        "expiresAt": "2026-12-01T00:00:00Z",
                    },
                },
                {
                    "metadata": {"name": "old", "namespace": "serving"},
                    "spec": {
                        "policy": {"kind": "ClusterModelPolicy", "name": "hosting"},
                        "rules": ["MW-ISO-001"],
                        "justification": "migration",
                        "approvedBy": "lead@example.com",
                        "ticket": "SEC-1",
                        "expiresAt": "2026-11-01T00:00:00Z",
                    },
                },
            ],
            "deployedmodels": [
                {
                    "metadata": {"name": "llama-abc", "namespace": "serving"},
                    "spec": {
                        "digest": "sha256:" + "ab" * 32,
                        "signer": "ml-team@example.com",
                        "lastResult": "verified",
                        "firstSeen": "2026-11-20T00:00:00Z",
                        "lastSeen": "2026-11-26T00:00:00Z",
                        "workloads": [{"kind": "Deployment", "name": "llm"}],
                    },
                },
            ],
        },
        apiserver_pods=[
            {
                "metadata": {"name": "kube-apiserver-cp1"},
                "spec": {
                    "containers": [
                        {
                            "command": [
                                "kube-apiserver",
                                "--client-ca-file=/etc/kubernetes/pki/ca.crt",
                                "--authentication-config=/etc/kubernetes/auth.yaml",
                            ]
                        }
                    ]
                },
            }
        ],
        whoami={
            "status": {"userInfo": {"username": "auditor", "groups": ["system:authenticated"]}}
        },
    )
