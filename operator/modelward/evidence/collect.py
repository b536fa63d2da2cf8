"""Gather a B008 evidence pack from what a ``ClusterReader`` returns.

The reader is the only part that talks to a cluster (``kube.KubeReader``); everything here is a
pure function of the objects it returns, so tests can feed fixed objects and the end-to-end test
feeds a real API server's. The state sections (policies, violations, exceptions, models, access)
are a snapshot at ``generatedAt``; the admission counters cover the period when Prometheus is
given, and "since each replica started" otherwise (policy status).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from modelward import __version__
from modelward.api.schema import API_VERSION as POLICY_API_VERSION
from modelward.evidence.b008 import ACTIVITIES, SECTIONS
from modelward.evidence.model import (
    API_VERSION,
    AccessSection,
    ActivityRow,
    ActivityStatus,
    Admissions,
    Attestation,
    Authentication,
    AuthMethod,
    ExceptionRow,
    ModelRow,
    Pack,
    PolicyCounts,
    PolicyRow,
    PolicyUse,
    PrometheusCounts,
    ViolationRow,
    sealed,
)

#: Violations listed one by one; the total is always exact.
MAX_VIOLATIONS = 500
ENFORCING = ("Enforce", "Patch")


class ClusterReader(Protocol):
    """What evidence needs from a cluster (all reads; nothing is written)."""

    def server(self) -> str: ...

    def version(self) -> str: ...

    def list_objects(self, group: str, version: str, plural: str) -> list[dict[str, Any]]:
        """Every object of a resource in every namespace; [] when the resource is not served."""
        ...

    def kube_apiserver_pods(self) -> list[dict[str, Any]]: ...

    def whoami(self) -> dict[str, Any] | None: ...


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> dt.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _ready(obj: Mapping[str, Any]) -> tuple[bool, str]:
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    for condition in (status or {}).get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            ok = condition.get("status") == "True"
            return ok, str(condition.get("message") or condition.get("reason") or "")
    return False, "no Ready condition yet (the operator has not judged this policy)"


def _selects(kind: str, namespace: str | None, spec: Mapping[str, Any]) -> str:
    match = spec.get("match") if isinstance(spec.get("match"), Mapping) else {}
    parts: list[str] = []
    if kind == "ModelPolicy":
        parts.append(f"namespace {namespace}")
    names = (match or {}).get("namespaces")
    if names:
        parts.append("namespaces " + ", ".join(map(str, names)))
    for key, label in (("namespaceSelector", "namespaces labelled"), ("podSelector", "pods")):
        selector = (match or {}).get(key)
        if isinstance(selector, Mapping):
            labels = selector.get("matchLabels") or {}
            text = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
            if selector.get("matchExpressions"):
                text = (text + ", " if text else "") + "expressions"
            parts.append(f"{label} {text or '(any)'}")
    if spec.get("exclude"):
        parts.append("with exclusions")
    return "; ".join(parts) or "every namespace modelward watches"


def policy_rows(policies: Iterable[Mapping[str, Any]]) -> list[PolicyRow]:
    rows: list[PolicyRow] = []
    for obj in policies:
        meta, spec = _meta(obj), _spec(obj)
        kind = str(obj.get("kind") or "ClusterModelPolicy")
        namespace = meta.get("namespace")
        default = str(spec.get("mode") or "Enforce")
        sections = {
            key: str(value.get("mode") or default)
            for key, value in spec.items()
            if key in SECTIONS and isinstance(value, Mapping)
        }
        ready, reason = _ready(obj)
        rows.append(
            PolicyRow(
                kind=kind,
                namespace=str(namespace) if namespace else None,
                name=str(meta.get("name", "")),
                ready=ready,
                reason=reason,
                mode=default,
                sections=sections,
                selects=_selects(kind, namespace, spec),
            )
        )
    return sorted(rows, key=lambda r: (r["kind"], r["namespace"] or "", r["name"]))


def activity_rows(policies: list[PolicyRow]) -> list[ActivityRow]:
    rows: list[ActivityRow] = []
    for activity in ACTIVITIES:
        uses = [
            PolicyUse(
                kind=p["kind"],
                namespace=p["namespace"],
                name=p["name"],
                section=section,
                mode=p["sections"][section],
                ready=p["ready"],
            )
            for p in policies
            for section in activity.sections
            if section in p["sections"]
        ]
        live = [u["mode"] for u in uses if u["ready"]]
        status: ActivityStatus = (
            "enforced"
            if any(m in ENFORCING for m in live)
            else "audit-only"
            if live
            else "not-covered"
        )
        rows.append(
            ActivityRow(
                id=activity.id,
                title=activity.title,
                asks=activity.asks,
                status=status,
                policies=uses,
            )
        )
    return rows


def violation_rows(reports: Iterable[Mapping[str, Any]]) -> tuple[list[ViolationRow], int]:
    """Failing, warning and waived (skip) results of modelward's PolicyReports."""
    rows: list[ViolationRow] = []
    total = 0
    for report in reports:
        namespace = str(_meta(report).get("namespace", ""))
        for result in report.get("results") or []:
            if not isinstance(result, Mapping) or result.get("source") != "modelward":
                continue
            if result.get("result") not in ("fail", "warn", "skip"):
                continue
            total += 1
            if len(rows) >= MAX_VIOLATIONS:
                continue
            resources = result.get("resources") or [{}]
            first = resources[0] if isinstance(resources[0], Mapping) else {}
            rows.append(
                ViolationRow(
                    namespace=namespace,
                    resource=f"{first.get('kind', '?')}/{first.get('name', '?')}",
                    policy=str(result.get("policy", "")),
                    rule=str(result.get("rule", "")),
                    result=str(result.get("result")),
                    message=str(result.get("message", "")),
                )
            )
    rows.sort(key=lambda r: (r["namespace"], r["resource"], r["policy"], r["rule"]))
    return rows, total


def _text_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def _workloads(spec: Mapping[str, Any]) -> str:
    targets = spec.get("workloads") if isinstance(spec.get("workloads"), Mapping) else {}
    names = _text_list((targets or {}).get("names"))
    selector = (targets or {}).get("selector") or (targets or {}).get("podSelector")
    parts = []
    if names:
        parts.append("names " + ", ".join(names))
    if isinstance(selector, Mapping):
        labels = selector.get("matchLabels") or {}
        parts.append("labels " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())))
    return "; ".join(parts) or "(see the exception)"


def _policy_name(value: Any) -> str:
    if isinstance(value, Mapping):
        return f"{value.get('kind', '')} {value.get('name', '')}".strip()
    return str(value or "")


def exception_rows(
    exceptions: Iterable[Mapping[str, Any]], *, now: dt.datetime
) -> list[ExceptionRow]:
    rows: list[ExceptionRow] = []
    for obj in exceptions:
        meta, spec = _meta(obj), _spec(obj)
        status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
        # The operator's view (it knows the cluster's maximum lifetime and whether the policy
        # and rules exist) when it has written one; the spec's expiry otherwise.
        expires = parse_time((status or {}).get("effectiveExpiresAt") or spec.get("expiresAt"))
        state = "invalid" if expires is None else "active" if expires > now else "expired"
        if state == "active" and str((status or {}).get("state", "")).lower() == "invalid":
            state = "invalid"
        rows.append(
            ExceptionRow(
                namespace=str(meta.get("namespace", "")),
                name=str(meta.get("name", "")),
                policy=_policy_name(spec.get("policy")),
                rules=_text_list(spec.get("rules") or spec.get("ruleIDs")),
                workloads=_workloads(spec),
                justification=str(spec.get("justification", "")),
                approvedBy=str(spec.get("approvedBy", "")),
                ticket=str(spec.get("ticket", "")),
                expiresAt=str(spec.get("expiresAt", "")),
                state=state,  # type: ignore[typeddict-item]
            )
        )
    return sorted(rows, key=lambda r: (r["state"], r["namespace"], r["name"]))


def model_rows(models: Iterable[Mapping[str, Any]]) -> list[ModelRow]:
    rows: list[ModelRow] = []
    for obj in models:
        meta, spec = _meta(obj), _spec(obj)
        rows.append(
            ModelRow(
                namespace=str(meta.get("namespace", "")),
                name=str(meta.get("name", "")),
                digest=str(spec.get("digest", "")),
                signer=str(spec.get("signer", "")),
                lastResult=str(spec.get("lastResult", "")),
                firstSeen=str(spec.get("firstSeen", "")),
                lastSeen=str(spec.get("lastSeen", "")),
                workloads=[
                    f"{w.get('kind')}/{w.get('name')}"
                    for w in spec.get("workloads") or []
                    if isinstance(w, Mapping)
                ],
            )
        )
    return sorted(rows, key=lambda r: (r["namespace"], r["name"]))


def policy_counts(policies: Iterable[Mapping[str, Any]]) -> list[PolicyCounts]:
    rows: list[PolicyCounts] = []
    for obj in policies:
        meta = _meta(obj)
        status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
        counts = (status or {}).get("violations") or {}
        label = (
            f"{meta.get('namespace')}/{meta.get('name')}"
            if meta.get("namespace")
            else str(meta.get("name", ""))
        )

        def count(key: str, counts: Mapping[str, Any] = counts) -> int:
            value = counts.get(key, 0) if isinstance(counts, Mapping) else 0
            return value if isinstance(value, int) else 0

        rows.append(
            PolicyCounts(
                policy=label,
                denied=count("denied"),
                patched=count("patched"),
                warned=count("warned"),
                current=count("current"),
            )
        )
    return sorted(rows, key=lambda r: r["policy"])


def _flags(pod: Mapping[str, Any]) -> dict[str, str]:
    flags: dict[str, str] = {}
    for container in _spec(pod).get("containers") or []:
        if not isinstance(container, Mapping):
            continue
        for arg in [*(container.get("command") or []), *(container.get("args") or [])]:
            if isinstance(arg, str) and arg.startswith("--"):
                name, _, value = arg[2:].partition("=")
                flags[name] = value
    return flags


def _mfa_rules(config: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """JWT issuers of a structured AuthenticationConfiguration: (with an MFA claim rule, without).

    An issuer counts as requiring MFA when a claim validation rule requires the ``amr`` claim to
    hold ``mfa`` (``claim: amr`` + ``requiredValue: mfa``, or a CEL expression on ``claims.amr``
    mentioning ``mfa``).
    """
    with_mfa: list[str] = []
    without: list[str] = []
    for jwt in config.get("jwt") or []:
        if not isinstance(jwt, Mapping):
            continue
        issuer = str((jwt.get("issuer") or {}).get("url", "?"))
        rules = [r for r in jwt.get("claimValidationRules") or [] if isinstance(r, Mapping)]
        mfa = any(
            (r.get("claim") == "amr" and r.get("requiredValue") == "mfa")
            or ("amr" in str(r.get("expression", "")) and "mfa" in str(r.get("expression", "")))
            for r in rules
        )
        (with_mfa if mfa else without).append(issuer)
    return with_mfa, without


def authentication(
    apiserver_pods: list[dict[str, Any]],
    whoami: Mapping[str, Any] | None,
    auth_config: Mapping[str, Any] | None,
) -> tuple[Authentication, list[Attestation]]:
    """How users authenticate, as far as the cluster shows it, and what must be attested."""
    methods: list[AuthMethod] = []
    for pod in apiserver_pods:
        flags = _flags(pod)
        name = str(_meta(pod).get("name", "kube-apiserver"))
        for flag, what in (
            ("oidc-issuer-url", "OIDC issuer"),
            ("authentication-config", "structured authentication configuration"),
            ("token-auth-file", "static token file (no MFA possible)"),
            ("client-ca-file", "client certificates"),
            ("anonymous-auth", "anonymous requests"),
        ):
            if flag in flags:
                methods.append(
                    {"source": f"kube-apiserver {name}", "detail": f"{what}: {flags[flag]}"}
                )
    if whoami:
        user = (whoami.get("status") or {}).get("userInfo") or {}
        extra = ", ".join(sorted((user.get("extra") or {}).keys()))
        methods.append(
            {
                "source": "SelfSubjectReview (who generated this pack)",
                "detail": f"user {user.get('username', '?')}, groups "
                f"{', '.join(user.get('groups') or []) or '-'}"
                + (f", extra {extra}" if extra else ""),
            }
        )
    mfa: Any = "unknown"
    evidence = (
        "the API server does not expose how users authenticate; "
        "give --authentication-config with the cluster's AuthenticationConfiguration"
    )
    if auth_config is not None:
        with_mfa, without = _mfa_rules(auth_config)
        if with_mfa and not without:
            mfa = "enforced"
            evidence = "every JWT issuer requires the amr claim to contain mfa: " + ", ".join(
                with_mfa
            )
        elif without:
            mfa = "not-enforced"
            evidence = "JWT issuers without an MFA claim rule: " + ", ".join(without)
        else:
            evidence = "the AuthenticationConfiguration defines no JWT issuer"
        methods.append({"source": "AuthenticationConfiguration (given)", "detail": evidence})
    attestations: list[Attestation] = []
    if mfa != "enforced":
        attestations.append(
            Attestation(
                item="Multi-factor authentication for people who can reach model deployments",
                reason=evidence,
                signedBy="",
                date="",
            )
        )
    return Authentication(methods=methods, mfa=mfa, evidence=evidence), attestations


def collect(
    reader: ClusterReader,
    *,
    now: dt.datetime,
    since: dt.timedelta,
    access_review: Callable[[], AccessSection] | None = None,
    prometheus: Callable[[dt.datetime, dt.timedelta], PrometheusCounts] | None = None,
    auth_config: Mapping[str, Any] | None = None,
) -> Pack:
    """The sealed evidence pack for the cluster ``reader`` reads, over [now - since, now]."""
    group, version = POLICY_API_VERSION.split("/")
    raw_policies = [
        {**p, "kind": kind}
        for plural, kind in (
            ("clustermodelpolicies", "ClusterModelPolicy"),
            ("modelpolicies", "ModelPolicy"),
        )
        for p in reader.list_objects(group, version, plural)
    ]
    policies = policy_rows(raw_policies)
    reports = [
        r
        for r in reader.list_objects("wgpolicyk8s.io", "v1alpha2", "policyreports")
        if (_meta(r).get("labels") or {}).get("app.kubernetes.io/managed-by") == "modelward"
    ]
    violations, total = violation_rows(reports)
    access: AccessSection = (
        access_review()
        if access_review is not None
        else AccessSection(
            available=False,
            reason="no access review was computed for this pack",
            rows=[],
            violations=0,
        )
    )
    auth, attestations = authentication(reader.kube_apiserver_pods(), reader.whoami(), auth_config)
    admissions = Admissions(
        policyStatus=policy_counts(raw_policies),
        prometheus=prometheus(now, since) if prometheus is not None else None,
    )
    pack = Pack(
        apiVersion=API_VERSION,
        control={
            "framework": "AIUC-1",
            "id": "B008",
            "title": "Protect model deployment environment",
        },
        generatedAt=iso(now),
        period={"start": iso(now - since), "end": iso(now)},
        cluster={"server": reader.server(), "version": reader.version()},
        modelward={"version": __version__},
        activities=activity_rows(policies),
        policies=policies,
        violations=violations,
        violationsTotal=total,
        exceptions=exception_rows(
            reader.list_objects(group, version, "modelpolicyexceptions"), now=now
        ),
        models=model_rows(reader.list_objects(group, version, "deployedmodels")),
        accessReview=access,
        admissions=admissions,
        authentication=auth,
        attestations=attestations,
        sha256="",
    )
    return sealed(pack)
