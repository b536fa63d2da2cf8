"""``modelward check``: evaluate manifests offline with exactly the admission engine.

For CI pipelines: the same ``parse_policy`` and ``evaluate_*`` functions the webhook calls,
with cluster facts (namespaces, NetworkPolicies, Services) taken from the manifests given.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from modelward import safeyaml
from modelward.engine import (
    Decision,
    Finding,
    Policy,
    StaticFacts,
    StaticKeySource,
    UnsupportedKind,
    evaluate_exposure,
    evaluate_workload,
    is_exposure,
    parse_policy,
    workload_from_object,
)
from modelward.engine.workloads import CONTAINER_LISTS, TEMPLATE_POINTERS
from modelward.errors import ManifestError, ModelwardError

if TYPE_CHECKING:
    from modelward.check_images import CheckLookups

SUFFIXES = (".yaml", ".yml", ".json")
#: What a fix for an object the engine cannot judge says.
SHAPE_FIX = "make it a valid Kubernetes object (`kubectl apply --dry-run=server` shows the error)"


@dataclass(frozen=True)
class Located:
    obj: dict[str, Any]
    source: str


def _walk_error(error: OSError) -> None:
    raise ManifestError(
        f"{error.filename}: cannot read folder: {error.strerror}",
        fix="make the folder readable, or leave it out",
    )


def _files(paths: Sequence[str]) -> Iterator[Path]:
    """Manifest files, folders walked in name order; an unreadable folder is an error, never
    silently skipped (a manifest CI did not see must not pass as checked)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found: list[Path] = []
            for root, dirs, names in os.walk(path, onerror=_walk_error):
                dirs.sort()
                found.extend(Path(root, n) for n in names if Path(n).suffix in SUFFIXES)
            yield from sorted(p for p in found if p.is_file())
        elif path.is_file():
            yield path
        elif path.exists():
            raise ManifestError(
                f"{raw}: not a regular file or folder", fix="pass manifest files or folders"
            )
        else:
            raise ManifestError(
                f"{raw}: no such file or directory", fix="pass manifest files or folders that exist"
            )


def _read_documents(path: Path) -> list[Any]:
    try:
        with path.open("rb") as f:
            data = f.read(safeyaml.MAX_YAML_BYTES + 1)
        return safeyaml.load_all(data.decode("utf-8"))
    except OSError as exc:
        raise ManifestError(
            f"{path}: cannot read: {exc.strerror}", fix="make the file readable, or leave it out"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"{path}: not UTF-8 text (byte {exc.start})", fix="save the file as UTF-8"
        ) from exc
    except safeyaml.UnsafeYaml as exc:
        raise ManifestError(
            f"{path}: YAML refused: {safeyaml.describe(exc)}", fix=safeyaml.ALIAS_FIX
        ) from exc
    except yaml.YAMLError as exc:
        raise ManifestError(
            f"{path}: cannot read YAML: {safeyaml.describe(exc)}",
            fix="fix the syntax (try `yamllint`), or leave the file out",
        ) from exc


def load_objects(paths: Sequence[str]) -> list[Located]:
    """Every Kubernetes object in the files (multi-document YAML, JSON, and v1 Lists).

    Each object's shape is checked (:func:`shape_problem`): one the engine cannot judge raises
    ``ManifestError`` naming the document, so ``check`` exits 2 instead of calling it clean.
    """
    found: list[Located] = []
    for path in _files(paths):
        for index, doc in enumerate(_read_documents(path)):
            if doc is None:
                continue
            where = f"{path}#{index + 1}"
            kind = doc.get("kind") if isinstance(doc, dict) else None
            if not isinstance(kind, str) or not kind:
                raise ManifestError(
                    f"{where}: not a Kubernetes object (no kind)",
                    fix="each document needs apiVersion, kind and metadata",
                )
            if kind.endswith("List") and "items" in doc:
                items = doc["items"]
                if not isinstance(items, list):
                    raise ManifestError(f"{where}: {kind}.items is not a list", fix=SHAPE_FIX)
                located = [Located(item, f"{where} items[{i}]") for i, item in enumerate(items)]
            else:
                located = [Located(doc, where)]
            for item in located:
                problem = shape_problem(item.obj)
                if problem is not None:
                    raise ManifestError(f"{item.source}: {problem}", fix=SHAPE_FIX)
                found.append(item)
    return found


def _string_map_problem(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        return f"{where} is not a map"
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            return f"{where} {key!r}: keys and values must be strings (quote {item!r})"
    return None


def _metadata_problem(meta: Any, where: str) -> str | None:
    if meta is None:
        return None
    if not isinstance(meta, dict):
        return f"{where} is not a map"
    for name in ("name", "namespace", "generateName"):
        if meta.get(name) is not None and not isinstance(meta[name], str):
            return f"{where}.{name} is not a string"
    return _string_map_problem(meta.get("labels"), f"{where}.labels") or _string_map_problem(
        meta.get("annotations"), f"{where}.annotations"
    )


def _pod_spec_problem(spec: Any, where: str) -> str | None:
    if not isinstance(spec, dict):
        return f"{where} is {'missing' if spec is None else 'not a map'}"
    for list_name in CONTAINER_LISTS:
        containers = spec.get(list_name)
        if containers is None and list_name != "containers":
            continue
        if not isinstance(containers, list) or (list_name == "containers" and not containers):
            return f"{where}.{list_name} is not a non-empty list"
        for i, container in enumerate(containers):
            at = f"{where}.{list_name}[{i}]"
            if not isinstance(container, dict):
                return f"{at} is not a map"
            if not isinstance(container.get("name"), str):
                return f"{at}.name is missing or not a string"
            if container.get("image") is not None and not isinstance(container["image"], str):
                return f"{at}.image is not a string"
    return None


def _describe_value(value: Any) -> str:
    names = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return names.get(type(value), f"a {type(value).__name__}")


def shape_problem(obj: Any) -> str | None:
    """Why the engine cannot judge ``obj`` (``None`` when it can).

    The engine reads pod specs leniently (the API server has validated what admission sees);
    offline, the manifests are raw, so what the API server would refuse is refused here, as
    unusable input, rather than judged on whatever part of it the engine could read.
    """
    if not isinstance(obj, dict):
        return f"not a Kubernetes object but {_describe_value(obj)}"
    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        return "not a Kubernetes object (no kind)"
    problem = _metadata_problem(obj.get("metadata"), "metadata")
    if problem is not None:
        return problem
    if "spec" in obj and not isinstance(obj["spec"], dict):
        return f"{kind}.spec is not a map"
    pointer = TEMPLATE_POINTERS.get(kind)
    if pointer is not None:
        current: Any = obj
        for depth, token in enumerate(pointer):
            current = current.get(token)
            if not isinstance(current, dict):
                return f"{'.'.join(pointer[: depth + 1])} is missing or not a map"
        if pointer:
            problem = _metadata_problem(current.get("metadata"), ".".join((*pointer, "metadata")))
            if problem is not None:
                return problem
        return _pod_spec_problem(current.get("spec"), ".".join((*pointer, "spec")))
    if kind == "Service":
        spec = obj.get("spec") or {}
        return _string_map_problem(spec.get("selector"), "spec.selector")
    if kind == "Ingress":
        return _ingress_problem(obj.get("spec") or {})
    return None


def _backend_problem(backend: Any, where: str) -> str | None:
    if backend is None:
        return None
    if not isinstance(backend, dict):
        return f"{where} is not a map"
    service = backend.get("service")
    if service is not None and not (
        isinstance(service, dict) and isinstance(service.get("name", ""), str)
    ):
        return f"{where}.service is not a map with a string name"
    return None


def _ingress_problem(spec: dict[str, Any]) -> str | None:
    problem = _backend_problem(spec.get("defaultBackend"), "spec.defaultBackend")
    rules = spec.get("rules") or []
    if problem is not None or not isinstance(rules, list):
        return problem or "spec.rules is not a list"
    for i, rule in enumerate(rules):
        http = rule.get("http") if isinstance(rule, dict) else None
        if not isinstance(rule, dict) or not isinstance(http or {}, dict):
            return f"spec.rules[{i}] is not a map with an http map"
        paths = (http or {}).get("paths") or []
        if not isinstance(paths, list):
            return f"spec.rules[{i}].http.paths is not a list"
        for j, path in enumerate(paths):
            where = f"spec.rules[{i}].http.paths[{j}]"
            if not isinstance(path, dict):
                return f"{where} is not a map"
            problem = _backend_problem(path.get("backend"), f"{where}.backend")
            if problem is not None:
                return problem
    return None


@contextlib.contextmanager
def _cannot_judge(located: Located) -> Iterator[None]:
    """Whatever :func:`shape_problem` let through but the engine still cannot read is unusable
    input naming its document (exit 2), never a traceback and never a clean result."""
    try:
        yield
    except ModelwardError:
        raise
    except Exception as exc:
        raise ManifestError(
            f"{located.source}: the engine cannot judge this {located.obj.get('kind')} "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
            fix=f"{SHAPE_FIX}; if the API server accepts it, report it as a modelward bug",
        ) from exc


def _key_material(objects: Sequence[Located]) -> StaticKeySource:
    """ConfigMap and Secret keys given with the policies, standing in for what the operator
    reads from its namespace (which is unknown offline: any namespace given here counts)."""
    values: dict[tuple[str, str, str, str], str] = {}
    for located in objects:
        obj = located.obj
        kind = obj.get("kind")
        if kind not in ("ConfigMap", "Secret"):
            continue
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name") or "")
        data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
        text = obj.get("stringData") if isinstance(obj.get("stringData"), dict) else {}
        for key, value in {**(data or {}), **(text or {})}.items():
            if kind == "Secret" and key not in (text or {}):
                try:
                    value = base64.b64decode(str(value)).decode()
                except (binascii.Error, UnicodeDecodeError):
                    continue
            values[(str(kind), namespace, name, str(key))] = str(value)
    return StaticKeySource("", values)


def load_policies(paths: Sequence[str]) -> list[Policy]:
    """Compile every policy in the files; a broken one raises ``PolicyError``."""
    policies = []
    objects = load_objects(paths)
    keys = _key_material(objects)
    for located in objects:
        if located.obj.get("kind") in ("ClusterModelPolicy", "ModelPolicy"):
            with _cannot_judge(located):
                policies.append(parse_policy(located.obj, keys=keys))
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


def check(
    manifests: Sequence[str],
    policies: Sequence[Policy],
    *,
    lookups: CheckLookups | None = None,
) -> tuple[list[CheckResult], int]:
    """Findings for every workload and exposure (Ingress, Service, route) in ``manifests``;
    also how many were judged. With ``lookups`` (``--registry-lookups``), the images are
    looked up in their registries first and the image rules that need it run too."""
    objects = load_objects(manifests)
    facts = StaticFacts()
    for located in objects:
        with _cannot_judge(located):
            facts.add_object(located.obj)
    if lookups is not None:
        workloads = []
        for position, located in enumerate(objects):
            with _cannot_judge(located), contextlib.suppress(UnsupportedKind):
                if not is_exposure(located.obj):
                    workloads.append((position, workload_from_object(located.obj)))
        lookups.gather(workloads, policies, facts)
    results: list[CheckResult] = []
    judged = 0
    for position, located in enumerate(objects):
        obj = located.obj
        meta = obj.get("metadata") or {}
        resource = {
            "kind": str(obj.get("kind")),
            "namespace": str(meta.get("namespace") or "default"),
            "name": str(meta.get("name") or meta.get("generateName") or ""),
        }
        decision: Decision
        with _cannot_judge(located):
            if is_exposure(obj):
                decision = evaluate_exposure(
                    {**obj, "metadata": {**meta, "namespace": resource["namespace"]}},
                    facts,
                    policies,
                )
            else:
                try:
                    workload = workload_from_object(obj)
                except UnsupportedKind:
                    continue
                decision = evaluate_workload(
                    workload,
                    facts,
                    policies,
                    images=lookups.for_workload(position) if lookups is not None else None,
                )
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
