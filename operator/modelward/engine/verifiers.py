"""Which of a pod's verifier init containers modelward injected: the only ones to believe.

Anyone allowed to create a pod can add an init container named ``modelward-verify-…`` whose
termination message says "verified, signed by the release key"; the name proves nothing. What
a tenant cannot do is run *exactly* the verifier an integrity policy injects (the policy's
image, arguments, read-only mounts of the declared model and of the policy's keys) and have it
say anything but the truth about that model. So the operator recomputes, with the functions the
mutating webhook injects with (``engine.rules.integrity``), the verifier each policy that
selects the pod would inject now, and believes a termination message only from a container
that is exactly that: nothing changed and nothing added (``command``, ``env``, ``workingDir``,
another mount …) except the defaults the API server fills in (``engine.exact``).

Consequences worth knowing: a result is judged against the policies as they are when it
arrives, so a verifier injected before a key rotation is not believed after it (its result is
reported as unrecognised, never as verified); a pod that no integrity policy selects has no
verifier to believe at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelward.engine.decision import PolicyRef
from modelward.engine.exact import differs
from modelward.engine.facts import NamespaceFacts
from modelward.engine.policy import IntegrityConfig, Policy
from modelward.engine.rules.integrity import (
    declared_model,
    key_annotation,
    keys_volume,
    verifier_container,
)
from modelward.engine.workloads import Workload


@dataclass(frozen=True)
class InjectedVerifier:
    """An init container that is exactly the verifier ``policy`` injects."""

    container: str
    policy: PolicyRef
    #: What the verifier was told to write as its ``policy`` (``--policy``).
    policy_label: str


@dataclass(frozen=True)
class PodVerifiers:
    """The verifiers of one pod: the believable ones, and why the others are not."""

    injected: Mapping[str, InjectedVerifier] = field(default_factory=dict)
    #: Container name → why it is not the verifier of the policy that names it.
    mismatches: Mapping[str, str] = field(default_factory=dict)


def _writes(container: Mapping[str, Any], volume: str) -> bool:
    return any(
        isinstance(m, Mapping) and m.get("name") == volume and m.get("readOnly") is not True
        for m in container.get("volumeMounts") or []
    )


def verifier_mismatch(w: Workload, cfg: IntegrityConfig) -> str | None:
    """Why the pod does not carry exactly the verifier ``cfg`` injects, or None if it does.

    Beyond the container itself: the keys volume and the inline keys' annotations must be the
    policy's (else the real verifier would check against a tenant's key), and no container
    that runs after the verifier or beside it may write the model (else what was verified is
    not what is served).
    """
    model = declared_model(w)
    if isinstance(model, str):
        return model
    name = cfg.container_name
    init = [c for c in w.pod_spec.get("initContainers") or [] if isinstance(c, Mapping)]
    index = next((i for i, c in enumerate(init) if c.get("name") == name), None)
    if index is None:
        return f"the pod has no init container {name}"
    problem = differs(init[index], verifier_container(cfg, model), where=f"initContainers[{name}]")
    if problem:
        return problem
    expected_volume = keys_volume(cfg)
    volume = next(
        (
            v
            for v in w.pod_spec.get("volumes") or []
            if isinstance(v, Mapping) and v.get("name") == expected_volume["name"]
        ),
        None,
    )
    if volume is None:
        return f"the pod has no volume {expected_volume['name']} with the policy's keys"
    problem = differs(volume, expected_volume, where=f"volumes[{expected_volume['name']}]")
    if problem:
        return problem
    for signer in cfg.signers:
        annotation = key_annotation(cfg, signer)
        if signer.pem is not None and w.annotations.get(annotation) != signer.pem:
            return f"annotation {annotation} does not hold the policy's key {signer.name!r}"
    for position, container in enumerate(init):
        sidecar = container.get("restartPolicy") == "Always"
        if (position > index or sidecar) and _writes(container, model.volume):
            return (
                f"init container {container.get('name')} can change the model "
                f"{model.volume!r} after it was verified"
            )
    return None


def pod_verifiers(
    w: Workload, namespace: NamespaceFacts, policies: Iterable[Policy]
) -> PodVerifiers:
    """The verifiers the integrity policies that select the pod injected, and the impostors
    among the containers that carry one of those policies' verifier names."""
    injected: dict[str, InjectedVerifier] = {}
    mismatches: dict[str, str] = {}
    for policy in policies:
        cfg = policy.integrity
        if cfg is None or not cfg.require_signature or not policy.applies_to(namespace, w.labels):
            continue
        problem = verifier_mismatch(w, cfg)
        if problem is None:
            injected[cfg.container_name] = InjectedVerifier(
                container=cfg.container_name, policy=policy.ref, policy_label=cfg.policy_label
            )
        else:
            mismatches.setdefault(
                cfg.container_name, f"not the verifier {policy.ref} injects: {problem}"
            )
    for name in injected:
        mismatches.pop(name, None)
    return PodVerifiers(injected=injected, mismatches=mismatches)
