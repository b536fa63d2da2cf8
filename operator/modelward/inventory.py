"""``modelward inventory``: the deployed-model inventory as JSON or a CycloneDX 1.6 ML-BOM.

Reads DeployedModel objects (written by the operator from verifier results) from the cluster.
The hash of each model is its OpenSSF Model Signing subject digest: a SHA-256 over the signed
per-file digests, so the BOM pins exactly the bytes that were verified.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from modelward import __version__


def fetch_deployed_models(
    namespace: str | None, *, kubeconfig: str | None = None, context: str | None = None
) -> list[dict[str, Any]]:
    """The DeployedModel objects (all namespaces when ``namespace`` is ``None``), or a
    ``ConfigurationError`` saying what stood in the way (no kubeconfig, a broken one, an
    unreachable or refusing API server)."""
    from modelward.controller.kube import KubeApi
    from modelward.controller.kubeconfig import api_errors, load_api_client

    cluster = load_api_client(kubeconfig=kubeconfig, context=context)
    with api_errors(cluster, resource="deployedmodels.modelward.io"):
        return KubeApi(cluster.api).list_deployed_models(namespace)


def inventory_rows(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for item in items:
        meta = item.get("metadata") or {}
        rows.append(
            {
                "namespace": meta.get("namespace"),
                "name": meta.get("name"),
                **dict(item.get("spec") or {}),
            }
        )
    return sorted(rows, key=lambda r: (str(r["namespace"]), str(r["name"])))


def render_cyclonedx(items: Sequence[Mapping[str, Any]], *, now: dt.datetime | None = None) -> str:
    """A CycloneDX 1.6 BOM with one ``machine-learning-model`` component per deployed model."""
    components = []
    for row in inventory_rows(items):
        digest = str(row.get("digest", ""))
        algorithm, _, content = digest.partition(":")
        workloads = ", ".join(
            f"{w.get('kind')}/{w.get('name')}" for w in row.get("workloads") or []
        )
        properties = [
            {"name": "modelward:namespace", "value": str(row["namespace"])},
            {"name": "modelward:digest-kind", "value": "openssf-model-signing-subject"},
            {"name": "modelward:signer", "value": str(row.get("signer", ""))},
            {"name": "modelward:scan", "value": str(row.get("scan", ""))},
            {"name": "modelward:last-result", "value": str(row.get("lastResult", ""))},
            {"name": "modelward:first-seen", "value": str(row.get("firstSeen", ""))},
            {"name": "modelward:last-seen", "value": str(row.get("lastSeen", ""))},
            {"name": "modelward:workloads", "value": workloads},
            {"name": "modelward:policies", "value": ", ".join(row.get("policies") or [])},
        ]
        components.append(
            {
                "type": "machine-learning-model",
                "bom-ref": f"{row['namespace']}/{row['name']}",
                "name": workloads.split(", ")[0] if workloads else str(row["name"]),
                "hashes": [{"alg": "SHA-256", "content": content}] if algorithm == "sha256" else [],
                "properties": properties,
            }
        )
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tools": {
                "components": [{"type": "application", "name": "modelward", "version": __version__}]
            },
        },
        "components": components,
    }
    return json.dumps(bom, indent=2)


def inventory_document(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What ``-o json`` and ``-o yaml`` print."""
    return {"models": inventory_rows(items)}


def render_json(items: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps(inventory_document(items), indent=2)


def render_text(items: Sequence[Mapping[str, Any]]) -> str:
    rows = inventory_rows(items)
    if not rows:
        return "no deployed models recorded yet"
    lines = []
    for r in rows:
        workloads = ", ".join(f"{w.get('kind')}/{w.get('name')}" for w in r.get("workloads") or [])
        lines.append(
            f"{r['namespace']}  {r.get('digest')}  {r.get('lastResult')}  "
            f"signer={r.get('signer')}  scan={r.get('scan')}  {workloads}"
        )
    return "\n".join(lines)
