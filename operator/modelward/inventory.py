"""``modelward inventory``: the deployed-model inventory as JSON or a CycloneDX 1.6 ML-BOM.

Reads DeployedModel objects (written by the operator from verifier results) from the cluster.
The hash of each model is its OpenSSF Model Signing subject digest: a SHA-256 over the signed
per-file digests, so the BOM pins exactly the bytes that were verified.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml

from modelward import __version__, safeyaml
from modelward.errors import ConfigurationError

KUBECONFIG_FIX = (
    "set KUBECONFIG to a readable kubeconfig for a reachable cluster "
    "(check with `kubectl get deployedmodels -A`)"
)


def _kubeconfig_paths() -> list[str]:
    raw = os.environ.get("KUBECONFIG") or "~/.kube/config"
    return [os.path.expanduser(p) for p in raw.split(os.pathsep) if p]


def _check_kubeconfig(path: str) -> None:
    """Read the kubeconfig with modelward's bounded YAML loader before the client library
    does (it would expand an alias bomb), so a broken one is a one-line error naming it."""
    try:
        with open(path, "rb") as f:
            text = f.read(safeyaml.MAX_YAML_BYTES + 1).decode("utf-8")
        document = safeyaml.load(text)
    except FileNotFoundError:
        return  # the client library reports a missing file among several paths
    except OSError as exc:
        raise ConfigurationError(
            f"kubeconfig {path}: cannot read: {exc.strerror}", fix=KUBECONFIG_FIX
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"kubeconfig {path}: not UTF-8 text", fix=KUBECONFIG_FIX) from exc
    except safeyaml.UnsafeYaml as exc:
        raise ConfigurationError(
            f"kubeconfig {path}: YAML refused: {safeyaml.describe(exc)}", fix=safeyaml.ALIAS_FIX
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigurationError(
            f"kubeconfig {path}: not valid YAML: {safeyaml.describe(exc)}", fix=KUBECONFIG_FIX
        ) from exc
    if document is not None and not isinstance(document, dict):
        raise ConfigurationError(f"kubeconfig {path}: not a kubeconfig map", fix=KUBECONFIG_FIX)


def api_client(*, kubeconfig: str | None = None, context: str | None = None) -> tuple[Any, str]:
    """A kubernetes ``ApiClient`` and where its credentials came from, or a
    ``ConfigurationError`` saying what stood in the way (no kubeconfig, a broken one)."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()  # not the library's global default
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not kubeconfig:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            where = "the in-cluster service account"
        else:
            paths = [os.path.expanduser(kubeconfig)] if kubeconfig else _kubeconfig_paths()
            for path in paths:
                _check_kubeconfig(path)
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.pathsep.join(paths),
                context=context,
                client_configuration=configuration,
            )
            where = f"kubeconfig {os.pathsep.join(paths)}"
    except ConfigException as exc:
        raise ConfigurationError(
            f"cannot load cluster credentials: {' '.join(str(exc).split())}", fix=KUBECONFIG_FIX
        ) from exc
    except (OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError) as exc:
        raise ConfigurationError(
            f"cannot load cluster credentials ({type(exc).__name__}: {exc})", fix=KUBECONFIG_FIX
        ) from exc
    return client.ApiClient(configuration), where


@contextlib.contextmanager
def cluster_errors(where: str, *, resource: str) -> Iterator[None]:
    """Turn what an API call can raise into one ``ConfigurationError`` naming the fix."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        fix = (
            "install modelward's CRDs (`modelward crds | kubectl apply -f -`)"
            if exc.status == 404
            else f"grant read access to {resource}, or use another kubeconfig context"
            if exc.status in (401, 403)
            else KUBECONFIG_FIX
        )
        raise ConfigurationError(
            f"the API server ({where}) answered {exc.status} {exc.reason}", fix=fix
        ) from exc
    except (HTTPError, OSError) as exc:
        raise ConfigurationError(
            f"cannot reach the API server ({where}): {type(exc).__name__}", fix=KUBECONFIG_FIX
        ) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(
            f"the API server ({where}) sent an unexpected answer ({type(exc).__name__})",
            fix=KUBECONFIG_FIX,
        ) from exc


def fetch_deployed_models(namespace: str | None) -> list[dict[str, Any]]:
    """The DeployedModel objects, or a ``ConfigurationError`` saying what stood in the way
    (no kubeconfig, a broken one, an unreachable or refusing API server)."""
    from modelward.controller.kube import KubeApi

    api, where = api_client()
    with cluster_errors(where, resource="deployedmodels.modelward.io"):
        items = KubeApi(api).list_deployed_models(namespace)
    return items


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


def render_json(items: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps({"models": inventory_rows(items)}, indent=2)


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
