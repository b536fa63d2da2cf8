"""``modelward access-review``: who can reach the models, computed from RBAC objects.

For every namespace a policy's ``access`` section selects, which subjects hold each sensitive
permission (exec, attach, port-forward, ephemeral containers, reading Secrets, writing claims
and workloads), through which binding and role, and which of them no job function allows.

The objects come from the live cluster (``--kubeconfig``/``--context``, or the in-cluster
service account) or, offline, from manifest files (``-f``). The evidence report calls
``review_cluster`` / ``review_objects`` as a library: they return typed ``AccessRow``s.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelward.engine import NamespaceFacts, Policy, parse_policy
from modelward.engine.rbac import RbacParseError, RbacSnapshot
from modelward.engine.rules.access import AccessRow, access_review
from modelward.errors import ConfigurationError, PolicyError

#: What the review lists from a cluster, in order.
LISTED_KINDS = (
    "ClusterModelPolicy",
    "ModelPolicy",
    "Namespace",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
)
#: Only these parts of a policy matter here: the rest (keys, verifiers) is not read, so a
#: policy whose other sections reference keys the reviewer cannot read still counts.
ACCESS_FIELDS = ("mode", "match", "exclude", "access", "description")


@dataclass(frozen=True)
class AccessReview:
    """The review: its rows, the namespaces it covered and the policies it judged against."""

    rows: tuple[AccessRow, ...]
    namespaces: tuple[str, ...]
    policies: tuple[str, ...]

    @property
    def violations(self) -> tuple[AccessRow, ...]:
        return tuple(r for r in self.rows if r.violates)


def access_policy(obj: Mapping[str, Any]) -> Policy | None:
    """A policy object reduced to its access section, compiled; None without one."""
    spec = obj.get("spec") or {}
    if not isinstance(spec, Mapping) or "access" not in spec:
        return None
    body = {**obj, "spec": {k: v for k, v in spec.items() if k in ACCESS_FIELDS}}
    return parse_policy(body)


def review_objects(
    objects: Iterable[Mapping[str, Any]], *, namespace: str | None = None
) -> AccessReview:
    """The review of a fixed set of objects (manifests, or what a cluster listed)."""
    objects = list(objects)
    policies = []
    for obj in objects:
        if obj.get("kind") in ("ClusterModelPolicy", "ModelPolicy"):
            try:
                policy = access_policy(obj)
            except PolicyError as exc:
                raise ConfigurationError(
                    str(exc), fix="fix the policy (see docs/policies.md, section access)"
                ) from exc
            if policy is not None:
                policies.append(policy)
    namespaces: dict[str, NamespaceFacts] = {}
    for obj in objects:
        meta = obj.get("metadata") or {}
        if obj.get("kind") == "Namespace":
            name = str(meta.get("name") or "")
            namespaces[name] = NamespaceFacts(
                name=name,
                labels=dict(meta.get("labels") or {}),
                annotations=dict(meta.get("annotations") or {}),
            )
        elif obj.get("kind") in ("Role", "RoleBinding") and meta.get("namespace"):
            ns = str(meta["namespace"])
            namespaces.setdefault(ns, NamespaceFacts(name=ns))
    if namespace is not None:
        namespaces = {namespace: namespaces.get(namespace) or NamespaceFacts(name=namespace)}
    try:
        snapshot = RbacSnapshot.from_objects(objects)
    except RbacParseError as exc:
        raise ConfigurationError(str(exc), fix="fix the RBAC object's selector") from exc
    selected = [ns for ns in namespaces.values() if any(p.governs_namespace(ns) for p in policies)]
    rows = access_review(snapshot, sorted(selected, key=lambda n: n.name), policies)
    return AccessReview(
        rows=tuple(rows),
        namespaces=tuple(sorted(n.name for n in selected)),
        policies=tuple(sorted(str(p.ref) for p in policies)),
    )


def _with_kind(kind: str, items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """List responses carry no kind per item."""
    return [{**item, "kind": kind} for item in items]


def review_cluster(
    *, namespace: str | None = None, kubeconfig: str | None = None, context: str | None = None
) -> AccessReview:
    """The review of the live cluster; ``ConfigurationError`` names what stood in the way."""
    from modelward.controller.kubeconfig import load_api_client

    return review_api(load_api_client(kubeconfig=kubeconfig, context=context), namespace=namespace)


def review_api(cluster: Any, *, namespace: str | None = None) -> AccessReview:
    """The review of the cluster a ``controller.kubeconfig.ClusterClient`` reaches."""
    from modelward.controller.kube import KubeApi
    from modelward.controller.kubeconfig import api_errors

    api = KubeApi(cluster.api)
    objects: list[dict[str, Any]] = []
    with api_errors(
        cluster,
        resource="policies, namespaces, roles and bindings (e.g. the view role plus RBAC read)",
    ):
        for kind in LISTED_KINDS:
            items, _ = api.list_kind(kind)
            objects += _with_kind(kind, items)
    return review_objects(objects, namespace=namespace)


# -- rendering -----------------------------------------------------------------------------------


def subject_label(row: AccessRow) -> str:
    """How a row's subject is shown (the table, the evidence pack)."""
    if row.subject_kind == "ServiceAccount":
        return f"ServiceAccount {row.subject_namespace}/{row.subject}"
    return f"{row.subject_kind} {row.subject}"


def _status(row: AccessRow) -> str:
    if row.built_in:
        return "built-in"
    if row.violates:
        return "VIOLATION " + ",".join(row.violates)
    return f"allowed ({row.job_function})"


def _scope(row: AccessRow) -> str:
    return f"names {','.join(row.resource_names)}" if row.resource_names else "all"


def render_table(review: AccessReview) -> str:
    header = ("NAMESPACE", "PERMISSION", "SUBJECT", "VERBS", "OBJECTS", "VIA", "STATUS")
    lines = [header]
    for row in review.rows:
        lines.append(
            (
                row.namespace,
                row.permission,
                subject_label(row),
                ",".join(row.verbs),
                _scope(row),
                f"{row.binding} -> {row.role}",
                _status(row),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = [
        "  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True))
        + "  "
        + line[-1]
        for line in lines
    ]
    if not review.policies:
        out.append("(no policy has an access section: nothing is protected)")
    out.append(
        f"{len(review.rows)} holdings in {len(review.namespaces)} protected namespaces, "
        f"{len(review.violations)} violations"
    )
    return "\n".join(out)


def review_document(review: AccessReview) -> dict[str, Any]:
    """The JSON form (a stable schema: the evidence report embeds it)."""
    return {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": "AccessReview",
        "policies": list(review.policies),
        "namespaces": list(review.namespaces),
        "violations": len(review.violations),
        "rows": [
            {
                **{
                    k: list(v) if isinstance(v, tuple) else v
                    for k, v in dataclasses.asdict(r).items()
                }
            }
            for r in review.rows
        ],
    }


def render_json(review: AccessReview) -> str:
    return json.dumps(review_document(review), indent=2, sort_keys=True)


CSV_FIELDS = tuple(f.name for f in dataclasses.fields(AccessRow))


def render_csv(review: AccessReview) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for row in review.rows:
        values = []
        for name in CSV_FIELDS:
            value = getattr(row, name)
            values.append(
                ";".join(value)
                if isinstance(value, tuple)
                else str(value).lower()
                if isinstance(value, bool)
                else value
            )
        writer.writerow(values)
    return buffer.getvalue().rstrip("\n")


def render_yaml(review: AccessReview) -> str:
    import yaml

    return yaml.safe_dump(review_document(review), sort_keys=True).rstrip("\n")


RENDERERS = {"table": render_table, "json": render_json, "yaml": render_yaml, "csv": render_csv}


def run_access_review(
    *,
    namespace: str | None,
    output: str,
    files: Sequence[str],
    kubeconfig: str | None,
    context: str | None,
) -> tuple[str, int]:
    """The rendered review and the exit code (1 when any violation is found)."""
    if files:
        from modelward.check import load_objects

        review = review_objects(
            (located.obj for located in load_objects(files) if isinstance(located.obj, Mapping)),
            namespace=namespace,
        )
    else:
        review = review_cluster(namespace=namespace, kubeconfig=kubeconfig, context=context)
    return RENDERERS[output](review), 1 if review.violations else 0
