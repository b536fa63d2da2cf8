"""Encrypted model storage (MW-STO-*): the volumes a governed pod mounts use allowed classes.

A model on a PersistentVolume is only as protected as the disk under it; whether that disk is
encrypted (and with whose key) is the StorageClass's business, so the policy names the classes
it trusts, or the parameters that make a class encrypted (``encrypted: "true"``, a KMS key).

- MW-STO-001: a ``persistentVolumeClaim`` volume names a claim whose class is not allowed. The
  claim is looked up in the operator's cache: a claim not seen (not created yet, or just
  created) cannot be shown to be encrypted and is a violation ("create the claim first"); a
  claim without ``storageClassName`` uses the default StorageClass; a claim with
  ``storageClassName: ""`` binds a statically provisioned volume with no class, which nothing
  shows to be encrypted.
- MW-STO-002: a generic ephemeral volume's ``volumeClaimTemplate`` asks for a class that is not
  allowed (the claim is created with the pod, so the template is what can be judged).

A StatefulSet's ``volumeClaimTemplates`` are judged as MW-STO-001 on the StatefulSet itself, so
``kubectl apply`` says at once what its pods would later be refused for.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from modelward.engine.decision import Violation
from modelward.engine.facts import ClusterFacts, StorageClassFacts
from modelward.engine.policy import StorageConfig
from modelward.engine.rules.integrity import MODEL_VOLUME
from modelward.engine.selectors import matches_any_glob
from modelward.engine.workloads import Workload


def class_problem(
    name: str | None, facts: ClusterFacts, config: StorageConfig
) -> tuple[str | None, str | None]:
    """(the class judged, why it is not allowed) for a requested ``storageClassName``;
    the reason is None when the class is allowed."""
    if name == "":
        return None, (
            'storageClassName is "" (a statically provisioned volume with no class), so '
            "nothing shows its disk is encrypted"
        )
    resolved: StorageClassFacts | None
    if name is None:
        resolved = facts.default_storage_class()
        if resolved is None:
            return None, "it names no StorageClass and the cluster has no default StorageClass"
        name = resolved.name
    else:
        resolved = facts.storage_class(name)
    if matches_any_glob(name, config.allowed_classes):
        return name, None
    if resolved is None:
        return name, f"StorageClass {name!r} does not exist (or modelward has not seen it)"
    if not config.required_parameters:
        return name, f"StorageClass {name!r} is not one of {list(config.allowed_classes)}"
    missing = [
        f"{key}={value}"
        for key, value in sorted(config.required_parameters.items())
        if not _parameter_holds(resolved.parameters.get(key), value)
    ]
    if missing:
        return name, (
            f"StorageClass {name!r} lacks the required parameters {', '.join(missing)}"
            + (
                f" and is not one of {list(config.allowed_classes)}"
                if config.allowed_classes
                else ""
            )
        )
    return name, None


def _parameter_holds(actual: str | None, required: str) -> bool:
    if actual is None:
        return False
    return bool(actual) if required == "*" else actual == required


def _fix(config: StorageConfig) -> str:
    options = []
    if config.allowed_classes:
        options.append(f"a StorageClass in {list(config.allowed_classes)}")
    if config.required_parameters:
        wanted = ", ".join(f"{k}: {v!r}" for k, v in sorted(config.required_parameters.items()))
        options.append(f"a StorageClass with the parameters {wanted}")
    return "use " + " or ".join(options) + " (an encrypted class)"


def _volumes(workload: Workload, config: StorageConfig) -> list[Mapping[str, Any]]:
    volumes = [v for v in workload.pod_spec.get("volumes") or [] if isinstance(v, Mapping)]
    if config.volumes == "ModelVolumes":
        model = workload.annotations.get(MODEL_VOLUME)
        return [v for v in volumes if v.get("name") == model]
    return volumes


def _claim_templates(workload: Workload, config: StorageConfig) -> list[Mapping[str, Any]]:
    templates = list(workload.claim_templates)
    if config.volumes == "ModelVolumes":
        model = workload.annotations.get(MODEL_VOLUME)
        templates = [t for t in templates if (t.get("metadata") or {}).get("name") == model]
    return templates


def check_storage(
    workload: Workload, facts: ClusterFacts, config: StorageConfig
) -> Iterator[Violation]:
    for template in _claim_templates(workload, config):
        name = str((template.get("metadata") or {}).get("name", ""))
        spec = template.get("spec")
        requested = spec.get("storageClassName") if isinstance(spec, Mapping) else None
        _, problem = class_problem(None if requested is None else str(requested), facts, config)
        if problem is not None:
            yield Violation(
                "MW-STO-001",
                f"volumeClaimTemplate {name!r} claims storage that is not allowed: {problem}",
                f"set its spec.storageClassName: {_fix(config)}",
            )
    for volume in _volumes(workload, config):
        name = str(volume.get("name", ""))
        claim_ref = volume.get("persistentVolumeClaim")
        if isinstance(claim_ref, Mapping):
            claim_name = str(claim_ref.get("claimName") or "")
            claim = facts.claim(workload.namespace, claim_name)
            if claim is None:
                yield Violation(
                    "MW-STO-001",
                    f"volume {name!r} mounts PersistentVolumeClaim {claim_name!r}, which "
                    "modelward has not seen, so its StorageClass cannot be checked",
                    "create the claim (with an allowed StorageClass) before the pod; "
                    + _fix(config),
                )
                continue
            _, problem = class_problem(claim.storage_class, facts, config)
            if problem is not None:
                yield Violation(
                    "MW-STO-001",
                    f"volume {name!r} mounts PersistentVolumeClaim {claim_name!r}: {problem}",
                    f"recreate the claim on an allowed class: {_fix(config)}",
                )
            continue
        ephemeral = volume.get("ephemeral")
        if isinstance(ephemeral, Mapping):
            template = ephemeral.get("volumeClaimTemplate") or {}
            spec = template.get("spec") if isinstance(template, Mapping) else None
            requested = spec.get("storageClassName") if isinstance(spec, Mapping) else None
            _, problem = class_problem(None if requested is None else str(requested), facts, config)
            if problem is not None:
                yield Violation(
                    "MW-STO-002",
                    f"ephemeral volume {name!r} claims storage that is not allowed: {problem}",
                    f"set volumeClaimTemplate.spec.storageClassName: {_fix(config)}",
                )
