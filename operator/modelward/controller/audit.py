"""The background audit: existing pods against the current policies.

Admission only sees what is created or changed; a pod created before a policy existed (or while
modelward was down and its webhooks failed open) is found here. Every ``interval`` the audit
lists pods page by page (nothing is cached between scans, so memory does not grow with the
cluster), evaluates them with the admission engine, and publishes:

- one ``PolicyReport`` (wgpolicyk8s.io/v1alpha2) per namespace, named ``modelward``, the format
  Kyverno's Policy Reporter and other tools read;
- the ``modelward_audit_violations`` gauge by policy, rule and namespace;
- ``status.violations.current`` on each policy (pods that break it now);
- a Warning Event (action ``Audit``) when a pod starts failing a policy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelward.api.schema import POLICY_REPORT_GROUP, POLICY_REPORT_VERSION
from modelward.controller.events import EventRecorder
from modelward.controller.kube import KubeApi
from modelward.controller.status import PolicyStatusWriter
from modelward.engine import Mode, Policy, evaluate_workload, workload_from_object
from modelward.engine.exceptions import Exceptions
from modelward.engine.rules import RULES
from modelward.observability.metrics import Metrics
from modelward.state import ClusterState

log = logging.getLogger("modelward.audit")

REPORT_NAME = "modelward"
PAGE_SIZE = 500
MAX_RESULTS = 1000  # keeps a report far below etcd's object size limit
SEVERITY = {
    "isolation": "high",
    "integrity": "critical",
    "secrets": "high",
    "transport": "medium",
    "images": "medium",
}


@dataclass
class NamespaceReport:
    results: list[dict[str, Any]] = field(default_factory=list)
    summary: Counter[str] = field(default_factory=Counter)
    truncated: int = 0

    def add(self, result: dict[str, Any]) -> None:
        self.summary[result["result"]] += 1
        if len(self.results) < MAX_RESULTS:
            self.results.append(result)
        else:
            self.truncated += 1


@dataclass
class AuditResult:
    """What one scan found."""

    reports: dict[str, NamespaceReport] = field(default_factory=dict)
    violations: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # policy, rule, ns
    failing_pods: dict[tuple[str, str | None, str], set[str]] = field(default_factory=dict)
    new_failures: list[tuple[Mapping[str, Any], Policy, list[str]]] = field(default_factory=list)
    pods: int = 0


def _resource(pod: Mapping[str, Any]) -> dict[str, str]:
    meta = pod.get("metadata") or {}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": str(meta.get("namespace", "")),
        "name": str(meta.get("name", "")),
        "uid": str(meta.get("uid", "")),
    }


def audit_pods(
    pods: Iterator[Mapping[str, Any]],
    *,
    state: ClusterState,
    policies: tuple[Policy, ...],
    excluded: frozenset[str],
    previous: set[tuple[str, str]],
    now: float | None = None,
    exceptions: Exceptions | None = None,
) -> AuditResult:
    """Evaluate pods against policies (pure but for the state it reads); no API calls.

    Findings an exception waives are reported as ``skip`` naming it (with who approved it and
    when it expires) and count as neither violations nor failing pods."""
    stamp = {"seconds": int(now if now is not None else time.time()), "nanos": 0}
    result = AuditResult()
    for pod in pods:
        meta = pod.get("metadata") or {}
        namespace = str(meta.get("namespace", ""))
        if namespace in excluded or meta.get("deletionTimestamp"):
            continue
        result.pods += 1
        workload = workload_from_object({**pod, "kind": "Pod"})  # list items carry no kind
        facts = state.namespace(namespace)
        report = result.reports.setdefault(namespace, NamespaceReport())
        for policy in policies:
            if not policy.applies_to(facts, workload.labels):
                continue
            judged = evaluate_workload(workload, state, (policy,), exceptions=exceptions)
            for f in judged.waived:
                v = f.violation
                family = RULES[v.rule_id].family if v.rule_id in RULES else "other"
                where = f"{v.container}: " if v.container else ""
                report.add(
                    {
                        "source": "modelward",
                        "policy": policy.ref.label,
                        "rule": v.rule_id,
                        "category": family,
                        "severity": SEVERITY.get(family, "medium"),
                        "result": "skip",
                        "scored": False,
                        "timestamp": stamp,
                        "message": f"{where}{f.exception_notes[0]}: {v.message}"[:1024],
                        "resources": [_resource(pod)],
                        "properties": {"exception": str(f.waived_by)},
                    }
                )
            findings = judged.without_waived().findings
            key = (policy.ref.kind, policy.ref.namespace, policy.ref.name)
            if not findings and judged.waived:
                continue
            if not findings:
                report.add(
                    {
                        "source": "modelward",
                        "policy": policy.ref.label,
                        "rule": "all",
                        "result": "pass",
                        "scored": True,
                        "timestamp": stamp,
                        "message": "the pod meets every rule of the policy",
                        "resources": [_resource(pod)],
                    }
                )
                continue
            result.failing_pods.setdefault(key, set()).add(str(meta.get("uid", "")))
            rules = []
            for f in findings:
                v = f.violation
                family = RULES[v.rule_id].family if v.rule_id in RULES else "other"
                where = f"{v.container}: " if v.container else ""
                report.add(
                    {
                        "source": "modelward",
                        "policy": policy.ref.label,
                        "rule": v.rule_id,
                        "category": family,
                        "severity": SEVERITY.get(family, "medium"),
                        "result": "warn" if f.mode is Mode.AUDIT else "fail",
                        "scored": True,
                        "timestamp": stamp,
                        "message": f"{where}{v.message}. Fix: {v.fix}"[:1024],
                        "resources": [_resource(pod)],
                    }
                )
                result.violations[(policy.ref.label, v.rule_id, namespace)] += 1
                rules.append(v.rule_id)
            if (str(meta.get("uid", "")), policy.ref.label) not in previous:
                result.new_failures.append((pod, policy, sorted(set(rules))))
    return result


def policy_report(namespace: str, report: NamespaceReport) -> dict[str, Any]:
    summary = {k: report.summary.get(k, 0) for k in ("pass", "fail", "warn", "error", "skip")}
    annotations = (
        {"modelward.io/truncated-results": str(report.truncated)} if report.truncated else {}
    )
    return {
        "apiVersion": f"{POLICY_REPORT_GROUP}/{POLICY_REPORT_VERSION}",
        "kind": "PolicyReport",
        "metadata": {
            "name": REPORT_NAME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "modelward"},
            "annotations": annotations,
        },
        "results": report.results,
        "summary": summary,
    }


class Auditor:
    def __init__(
        self,
        *,
        kube: KubeApi,
        state: ClusterState,
        metrics: Metrics,
        status: PolicyStatusWriter,
        events: EventRecorder,
        excluded_namespaces: tuple[str, ...],
        interval: float,
        max_exception_lifetime: dt.timedelta | None = None,
    ) -> None:
        self.kube = kube
        self.state = state
        self.metrics = metrics
        self.status = status
        self.events = events
        self.excluded = frozenset(excluded_namespaces)
        self.interval = interval
        self.max_exception_lifetime = max_exception_lifetime
        self.previous: set[tuple[str, str]] = set()
        self.reported: set[str] = set()

    def _publish(self, namespace: str, report: NamespaceReport) -> None:
        self.kube.put_namespaced_object(
            POLICY_REPORT_GROUP,
            POLICY_REPORT_VERSION,
            "policyreports",
            namespace,
            policy_report(namespace, report),
        )

    async def scan(self) -> AuditResult:
        started = time.perf_counter()
        policies = self.state.active_policies
        exceptions = Exceptions(self.state.exceptions, now=dt.datetime.now(dt.UTC))
        if self.max_exception_lifetime is not None:
            exceptions = Exceptions(
                exceptions.items, now=exceptions.now, max_lifetime=self.max_exception_lifetime
            )
        result = await asyncio.to_thread(
            lambda: audit_pods(
                self.kube.iter_pods(PAGE_SIZE),
                state=self.state,
                policies=policies,
                excluded=self.excluded,
                previous=self.previous,
                exceptions=exceptions,
            )
        )
        for namespace in sorted(set(result.reports) | self.reported):
            try:
                await asyncio.to_thread(
                    self._publish, namespace, result.reports.get(namespace, NamespaceReport())
                )
            except Exception as exc:
                log.warning("could not write the PolicyReport of %s: %s", namespace, exc)
        self.reported = set(result.reports)
        self.metrics.audit_violations.clear()
        for (label, rule, namespace), count in result.violations.items():
            self.metrics.audit_violations.labels(label, rule, namespace).set(count)
        for pod, failed, rules in result.new_failures:
            meta = pod.get("metadata") or {}
            self.events.post(
                str(meta.get("namespace")),
                _resource(pod),
                "PolicyViolation",
                "Warning",
                f"audit: breaks {failed.ref} ({', '.join(rules)})",
                action="Audit",
            )
        self.previous = {
            (uid, policy.ref.label)
            for policy in policies
            for uid in result.failing_pods.get(
                (policy.ref.kind, policy.ref.namespace, policy.ref.name), set()
            )
        }
        for key in self.state.policies:
            await self.status.set_current(key, len(result.failing_pods.get(key, ())))
        self.metrics.audit_duration.observe(time.perf_counter() - started)
        log.info(
            "audit: %d pods, %d violations, %d reports in %.2fs",
            result.pods,
            sum(result.violations.values()),
            len(result.reports),
            time.perf_counter() - started,
        )
        return result

    async def run(self, *, is_leader: Callable[[], bool], initial_delay: float = 5.0) -> None:
        await asyncio.sleep(initial_delay)
        while True:
            try:
                if is_leader():
                    await self.scan()
            except Exception as exc:
                log.warning("audit scan failed: %s (next in %.0fs)", exc, self.interval)
            await asyncio.sleep(self.interval)
