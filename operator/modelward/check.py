"""``modelward check``: evaluate manifests offline with exactly the admission engine.

For CI pipelines: the same ``parse_policy`` and ``evaluate_*`` functions the webhook calls,
with cluster facts (namespaces, NetworkPolicies, Services) taken from the manifests given.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelward.engine import (
    Decision,
    Finding,
    Policy,
    StaticFacts,
    UnsupportedKind,
    evaluate_exposure,
    evaluate_workload,
    is_exposure,
    parse_policy,
    workload_from_object,
)
from modelward.errors import ManifestError

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Located:
    obj: dict[str, Any]
    source: str


def _files(paths: Sequence[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        elif path.is_file():
            yield path
        else:
            raise ManifestError(
                f"{raw}: no such file or directory", fix="pass manifest files or folders that exist"
            )


def load_objects(paths: Sequence[str]) -> list[Located]:
    """Every Kubernetes object in the files (multi-document YAML, JSON, and v1 Lists)."""
    found: list[Located] = []
    for path in _files(paths):
        try:
            documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ManifestError(
                f"{path}: cannot read YAML: {exc}",
                fix="fix the syntax (try `yamllint`), or leave the file out",
            ) from exc
        for index, doc in enumerate(documents):
            if doc is None:
                continue
            where = f"{path}#{index + 1}"
            if not isinstance(doc, dict) or "kind" not in doc:
                raise ManifestError(
                    f"{where}: not a Kubernetes object (no kind)",
                    fix="each document needs apiVersion, kind and metadata",
                )
            items = doc.get("items") if doc.get("kind", "").endswith("List") else None
            for item in items if isinstance(items, list) else [doc]:
                found.append(Located(item, where))
    return found


def load_policies(paths: Sequence[str]) -> list[Policy]:
    """Compile every policy in the files; a broken one raises ``PolicyError``."""
    policies = []
    for located in load_objects(paths):
        if located.obj.get("kind") in ("ClusterModelPolicy", "ModelPolicy"):
            policies.append(parse_policy(located.obj))
    if not policies:
        raise ManifestError(
            f"no ClusterModelPolicy or ModelPolicy in {', '.join(paths)}",
            fix="pass the policy files with --policy",
        )
    return policies


@dataclass(frozen=True)
class CheckResult:
    resource: dict[str, str]
    source: str
    finding: Finding

    @property
    def action(self) -> str:
        if self.finding.blocks:
            return "deny"
        return "patch" if self.finding.patches else "warn"

    def as_json(self) -> dict[str, Any]:
        v = self.finding.violation
        return {
            "resource": self.resource,
            "source": self.source,
            "rule": v.rule_id,
            "policy": str(self.finding.policy),
            "mode": self.finding.mode.value,
            "action": self.action,
            "container": v.container,
            "message": v.message,
            "fix": v.fix,
        }


def check(manifests: Sequence[str], policies: Sequence[Policy]) -> tuple[list[CheckResult], int]:
    """Findings for every workload and exposure (Ingress, Service, route) in ``manifests``;
    also how many were judged."""
    objects = load_objects(manifests)
    facts = StaticFacts()
    for located in objects:
        facts.add_object(located.obj)
    results: list[CheckResult] = []
    judged = 0
    for located in objects:
        obj = located.obj
        meta = obj.get("metadata") or {}
        resource = {
            "kind": str(obj.get("kind")),
            "namespace": str(meta.get("namespace") or "default"),
            "name": str(meta.get("name") or meta.get("generateName") or ""),
        }
        decision: Decision
        if is_exposure(obj):
            decision = evaluate_exposure(
                {**obj, "metadata": {**meta, "namespace": resource["namespace"]}}, facts, policies
            )
        else:
            try:
                decision = evaluate_workload(workload_from_object(obj), facts, policies)
            except UnsupportedKind:
                continue
        judged += 1
        results.extend(CheckResult(resource, located.source, f) for f in decision.findings)
    return results, judged


def render_text(results: Sequence[CheckResult], judged: int) -> str:
    lines = []
    for r in results:
        res = r.resource
        lines.append(
            f"{r.action.upper():5} {res['kind']} {res['namespace']}/{res['name']} "
            f"({r.source}) {r.finding.describe()}"
        )
    denied = sum(r.action == "deny" for r in results)
    patched = sum(r.action == "patch" for r in results)
    warned = sum(r.action == "warn" for r in results)
    lines.append(
        f"{judged} objects checked: {denied} denials, {patched} patches, {warned} warnings"
    )
    return "\n".join(lines)


def render_json(results: Sequence[CheckResult], judged: int) -> str:
    return json.dumps(
        {
            "checked": judged,
            "denied": sum(r.action == "deny" for r in results),
            "findings": [r.as_json() for r in results],
        },
        indent=2,
    )
