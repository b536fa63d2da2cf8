"""``modelward check``: evaluate manifests offline with exactly the admission engine.

For CI pipelines: the same ``parse_policy`` and ``evaluate_*`` functions the webhook calls,
with cluster facts (namespaces, NetworkPolicies, Services) taken from the manifests given.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import json
import os
import sys
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
from modelward.engine.exceptions import (
    DEFAULT_MAX_LIFETIME,
    EXCEPTION_KIND,
    ExceptionError,
    Exceptions,
    PolicyException,
    lifetime_problem,
    parse_exception,
    unknown_rules,
)
from modelward.engine.rules import RULES
from modelward.engine.workloads import CONTAINER_LISTS, TEMPLATE_POINTERS
from modelward.errors import ManifestError, ModelwardError

if TYPE_CHECKING:
    from modelward.check_images import CheckLookups

SUFFIXES = (".yaml", ".yml", ".json")
#: ``-f -``: standard input, named so in messages and findings.
STDIN, STDIN_LABEL = "-", "<stdin>"
#: Kinds ``-n`` leaves alone (besides every ``Cluster*`` kind), as kubectl would.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "Node",
        "PersistentVolume",
        "StorageClass",
        "RuntimeClass",
        "PriorityClass",
        "IngressClass",
        "CustomResourceDefinition",
        "APIService",
        "CSIDriver",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "FlowSchema",
        "PriorityLevelConfiguration",
    }
)
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
    except OSError as exc:
        raise ManifestError(
            f"{path}: cannot read: {exc.strerror}", fix="make the file readable, or leave it out"
        ) from exc
    return _parse_documents(data, str(path))


def _read_stdin() -> list[Any]:
    """``-f -``: the documents on standard input (read once; the CLI refuses ``-`` twice)."""
    try:
        data = sys.stdin.buffer.read(safeyaml.MAX_YAML_BYTES + 1)
    except (OSError, AttributeError, ValueError) as exc:
        raise ManifestError(
            f"{STDIN_LABEL}: cannot read standard input ({type(exc).__name__})",
            fix="pipe the manifests in, or pass files with -f",
        ) from exc
    return _parse_documents(data, STDIN_LABEL)


def _parse_documents(data: bytes, where: str) -> list[Any]:
    try:
        return safeyaml.load_all(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"{where}: not UTF-8 text (byte {exc.start})", fix="save the file as UTF-8"
        ) from exc
    except safeyaml.UnsafeYaml as exc:
        raise ManifestError(
            f"{where}: YAML refused: {safeyaml.describe(exc)}", fix=safeyaml.ALIAS_FIX
        ) from exc
    except yaml.YAMLError as exc:
        raise ManifestError(
            f"{where}: cannot read YAML: {safeyaml.describe(exc)}",
            fix="fix the syntax (try `yamllint`), or leave the file out",
        ) from exc


def _documents(paths: Sequence[str]) -> Iterator[tuple[str, list[Any]]]:
    """``(label, documents)`` for every file in ``paths``, ``-`` being standard input."""
    for raw in paths:
        if raw == STDIN:
            yield STDIN_LABEL, _read_stdin()
        else:
            for path in _files([raw]):
                yield str(path), _read_documents(path)


def _is_cluster_scoped(kind: str) -> bool:
    return kind in CLUSTER_SCOPED_KINDS or kind.startswith("Cluster")


def _with_namespace(located: Located, namespace: str) -> Located:
    """``-n``: a namespaced object without ``metadata.namespace`` gets ``namespace``; one
    that names another namespace is refused, as ``kubectl apply -n`` refuses it."""
    obj = located.obj
    kind = str(obj.get("kind"))
    if _is_cluster_scoped(kind):
        return located
    meta = obj.get("metadata") or {}
    current = meta.get("namespace")
    if current and current != namespace:
        raise ManifestError(
            f"{located.source}: {kind} {meta.get('name')!r} is in namespace {current!r}, "
            f"not {namespace!r} (-n)",
            fix=f"drop -n, or pass -n {current} (kubectl apply -n refuses the same mismatch)",
        )
    return Located({**obj, "metadata": {**meta, "namespace": namespace}}, located.source)


def load_objects(paths: Sequence[str], *, namespace: str | None = None) -> list[Located]:
    """Every Kubernetes object in the files (multi-document YAML, JSON, and v1 Lists); ``-``
    reads standard input; ``namespace`` (``-n``) is given to namespaced objects without one.

    Each object's shape is checked (:func:`shape_problem`): one the engine cannot judge raises
    ``ManifestError`` naming the document, so ``check`` exits 2 instead of calling it clean.
    """
    found: list[Located] = []
    for label, documents in _documents(paths):
        for index, doc in enumerate(documents):
            if doc is None:
                continue
            where = f"{label}#{index + 1}"
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
                found.append(item if namespace is None else _with_namespace(item, namespace))
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


def load_policies(paths: Sequence[str], *, namespace: str | None = None) -> list[Policy]:
    """Compile every policy in the files; a broken one raises ``PolicyError``."""
    policies = []
    objects = load_objects(paths, namespace=namespace)
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
        if self.finding.waived_by is not None:
            return "skip"
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
            "exception": self.finding.waived_by,
            "notes": list(self.finding.exception_notes),
        }


@dataclass(frozen=True)
class CheckOutcome:
    """What ``check`` found: the findings, and every object judged (for reports that list
    passing objects too, such as JUnit and PolicyReport)."""

    results: tuple[CheckResult, ...]
    judged: tuple[Located, ...]

    @property
    def denied(self) -> bool:
        return any(r.action == "deny" for r in self.results)


def resource_of(obj: dict[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    return {
        "kind": str(obj.get("kind")),
        "namespace": str(meta.get("namespace") or "default"),
        "name": str(meta.get("name") or meta.get("generateName") or ""),
    }


def exceptions_in(objects: Sequence[Located], *, now: dt.datetime) -> list[PolicyException]:
    """The ModelPolicyExceptions among ``objects``, refused as the cluster would refuse them
    (an unknown rule ID or a lifetime past the default maximum is unusable input, never a
    silently broader or longer waiver)."""
    found = []
    for located in objects:
        if located.obj.get("kind") != EXCEPTION_KIND:
            continue
        try:
            exception = parse_exception(located.obj)
        except ExceptionError as exc:
            raise ManifestError(f"{located.source}: {exc}", fix="see docs/governance.md") from exc
        unknown = unknown_rules(exception, RULES)
        if unknown:
            raise ManifestError(
                f"{located.source}: {EXCEPTION_KIND} {exception.ref} names unknown rules "
                f"{', '.join(unknown)}",
                fix="use the rule IDs in docs/rules.md (no wildcards)",
            )
        if now < exception.expires_at:
            problem = lifetime_problem(
                exception, now=now, max_lifetime=DEFAULT_MAX_LIFETIME, created_at=None
            )
            if problem is not None:
                raise ManifestError(f"{located.source}: {exception.ref}: {problem}")
        found.append(exception)
    return found


def check_objects(
    manifests: Sequence[str],
    policies: Sequence[Policy],
    *,
    namespace: str | None = None,
    now: dt.datetime | None = None,
    exception_paths: Sequence[str] = (),
    lookups: CheckLookups | None = None,
) -> CheckOutcome:
    """Findings for every workload and exposure (Ingress, Service, route) in ``manifests``,
    and the objects judged. ModelPolicyExceptions in ``manifests`` or ``exception_paths``
    (the policy files) apply as in the cluster, judged at ``now`` (default: the clock).
    With ``lookups`` (``--registry-lookups``), the images are looked up in their registries
    first and the image rules that need it run too."""
    objects = load_objects(manifests, namespace=namespace)
    extra = load_objects(exception_paths, namespace=namespace) if exception_paths else []
    moment = now or dt.datetime.now(dt.UTC)
    exceptions = Exceptions(tuple(exceptions_in([*objects, *extra], now=moment)), now=moment)
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
    judged: list[Located] = []
    for position, located in enumerate(objects):
        obj = located.obj
        meta = obj.get("metadata") or {}
        resource = resource_of(obj)
        decision: Decision
        with _cannot_judge(located):
            if is_exposure(obj):
                decision = evaluate_exposure(
                    {**obj, "metadata": {**meta, "namespace": resource["namespace"]}},
                    facts,
                    policies,
                    exceptions=exceptions,
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
                    exceptions=exceptions,
                    images=lookups.for_workload(position) if lookups is not None else None,
                )
        judged.append(located)
        results.extend(CheckResult(resource, located.source, f) for f in decision.findings)
    return CheckOutcome(tuple(results), tuple(judged))


def check(
    manifests: Sequence[str],
    policies: Sequence[Policy],
    *,
    now: dt.datetime | None = None,
    exception_paths: Sequence[str] = (),
    lookups: CheckLookups | None = None,
) -> tuple[list[CheckResult], int]:
    """Findings for every workload and exposure in ``manifests``; also how many were judged."""
    outcome = check_objects(
        manifests, policies, now=now, exception_paths=exception_paths, lookups=lookups
    )
    return list(outcome.results), len(outcome.judged)


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
    skipped = sum(r.action == "skip" for r in results)
    lines.append(
        f"{judged} objects checked: {denied} denials, {patched} patches, {warned} warnings"
        + (f", {skipped} waived by exceptions" if skipped else "")
    )
    return "\n".join(lines)


def report_document(results: Sequence[CheckResult], judged: int) -> dict[str, Any]:
    """What ``-o json`` and ``-o yaml`` print."""
    return {
        "checked": judged,
        "denied": sum(r.action == "deny" for r in results),
        "findings": [r.as_json() for r in results],
    }


def render_json(results: Sequence[CheckResult], judged: int) -> str:
    return json.dumps(report_document(results, judged), indent=2)
