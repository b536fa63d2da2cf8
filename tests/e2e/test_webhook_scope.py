"""Only what a policy selects reaches modelward: the operator narrows the chart's fail-open
webhooks to the namespaces policies select (controller/scope.py), against the real
kube-apiserver, with the chart's own webhook configurations.

The module runs its own control plane: a policy that fails to compile anywhere in a cluster
rightly restores the chart's scope, so other modules' policies must not be seen here.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from modelward.controller.scope import FAIL_OPEN_SUFFIX, SCOPE_CONDITION
from modelward_dev.controlplane import LocalControlPlane, loopback_opener
from modelward_dev.operator_process import ENFORCED_LABEL, HARNESS_SCOPE_LABEL, OperatorProcess
from tests.conftest import own_control_plane
from tests.e2e.helpers import apply, apply_policy, pod, wait_for

pytestmark = pytest.mark.slow

CONFIGURATION = "modelward-scope"
ISOLATION = {"isolation": {"requireDefaultDenyNetworkPolicy": False}}


@pytest.fixture(scope="module")
def plane() -> Iterator[LocalControlPlane]:
    with own_control_plane() as control_plane:
        yield control_plane


@pytest.fixture(scope="module")
def operator(plane: LocalControlPlane) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        control_plane=plane,
        namespace="modelward-scope-system",
        configuration_name=CONFIGURATION,
        probe_namespace="modelward-scope-probe",
        webhooks="chart",
    )
    with process:
        yield process


def reviews(operator: OperatorProcess) -> float:
    """Every review this operator answered, both webhooks, any decision."""
    with loopback_opener().open(f"{operator.metrics_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("modelward_admission_requests_total{")
    )


def namespace(plane: LocalControlPlane, prefix: str, **labels: str) -> str:
    name = f"{prefix}-{secrets.token_hex(3)}"
    body = {"metadata": {"name": name, "labels": {HARNESS_SCOPE_LABEL: CONFIGURATION, **labels}}}
    response = plane.api_request("POST", "/api/v1/namespaces", body=body)
    assert response.status == 201, response.message
    return name


def policy(name: str, match: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": "ClusterModelPolicy",
        "metadata": {"name": name},
        "spec": {"mode": "Enforce", "match": match, **ISOLATION},
    }


def privileged(name: str, where: str) -> dict[str, Any]:
    body = pod(name, where)
    body["spec"]["hostNetwork"] = True
    return body


def refused(plane: LocalControlPlane, where: str) -> bool:
    """Whether a hostNetwork pod is refused by modelward there (server-side dry run)."""
    result = apply(plane.kubectl, privileged("probe", where), extra=("--dry-run=server",))
    return result.returncode != 0 and "MW-ISO-007" in result.stderr


def skipped(plane: LocalControlPlane, kind: str) -> list[str] | None:
    """The names the fail-open webhook of ``kind`` skips; None when it has the chart's scope."""
    plural = kind.lower() + "s"
    response = plane.api_request(
        "GET", f"/apis/admissionregistration.k8s.io/v1/{plural}/{CONFIGURATION}"
    )
    assert response.status == 200, response.message
    hook = next(h for h in response.json()["webhooks"] if h["name"].endswith(FAIL_OPEN_SUFFIX))
    for condition in hook.get("matchConditions") or []:
        if condition["name"] == SCOPE_CONDITION:
            inner = condition["expression"].removeprefix("!(request.namespace in [")
            return [name.strip('"') for name in inner.removesuffix("])").split(", ")]
    return None


def wait_skipped(plane: LocalControlPlane, name: str, *, kind: str = "Validating") -> None:
    wait_for(
        f"{name} to be skipped by the fail-open {kind} webhook",
        lambda: name in (skipped(plane, f"{kind}WebhookConfiguration") or []),
    )


def test_a_pod_in_a_namespace_no_policy_selects_never_reaches_modelward(
    plane: LocalControlPlane, operator: OperatorProcess
) -> None:
    selected = namespace(plane, "scope-selected", tier="models")
    apply_policy(
        plane.kubectl,
        policy("scope-by-label", {"namespaceSelector": {"matchLabels": {"tier": "models"}}}),
    )
    elsewhere = namespace(plane, "scope-elsewhere")
    wait_skipped(plane, elsewhere)
    wait_skipped(plane, elsewhere, kind="Mutating")
    assert selected not in (skipped(plane, "ValidatingWebhookConfiguration") or [])
    before = reviews(operator)
    for index in range(3):
        created = apply(plane.kubectl, privileged(f"p{index}", elsewhere))
        assert created.returncode == 0, created.stderr
    assert reviews(operator) == before  # target 0: not one review for the three pods
    # Where the policy selects, the fail-open webhook still calls and the pod is refused.
    assert refused(plane, selected)
    assert reviews(operator) > before


def test_a_namespace_created_a_moment_ago_is_reviewed_at_once(
    plane: LocalControlPlane, operator: OperatorProcess
) -> None:
    """A namespace unknown to the operator is never skipped: there is no window after its
    creation in which a pod gets past."""
    apply_policy(plane.kubectl, policy("scope-by-name", {"namespaces": ["scope-new-*"]}))
    for _ in range(3):
        fresh = namespace(plane, "scope-new")
        assert refused(plane, fresh)


def test_a_relabelled_namespace_and_a_changed_policy_take_effect_within_seconds(
    plane: LocalControlPlane, operator: OperatorProcess
) -> None:
    apply_policy(
        plane.kubectl,
        policy("scope-relabel", {"namespaceSelector": {"matchLabels": {"tier": "relabelled"}}}),
    )
    moved = namespace(plane, "scope-moved")
    wait_skipped(plane, moved)
    assert not refused(plane, moved)
    plane.kubectl("label", "namespace", moved, "tier=relabelled", check=True)
    started = time.monotonic()
    wait_for(f"{moved} to be reviewed after its relabelling", lambda: refused(plane, moved), 10)
    relabel_window = time.monotonic() - started

    later = namespace(plane, "scope-later")
    wait_skipped(plane, later)
    assert not refused(plane, later)
    started = time.monotonic()
    # The policy's Ready is written only once the webhooks call modelward wherever it selects.
    apply_policy(plane.kubectl, policy("scope-changed", {"namespaces": [later]}))
    assert refused(plane, later)
    policy_window = time.monotonic() - started
    print(f"relabel reviewed after {relabel_window:.2f}s; policy after {policy_window:.2f}s")


def test_a_policy_that_fails_to_compile_restores_the_charts_scope(
    plane: LocalControlPlane, operator: OperatorProcess
) -> None:
    aside = namespace(plane, "scope-aside")
    wait_skipped(plane, aside)
    fake = "-----BEGIN PUBLIC KEY-----\nAAAAAAAAAAAA\n-----END PUBLIC KEY-----\n"
    broken = policy("scope-broken", {"namespaces": ["nowhere"]})
    broken["spec"]["integrity"] = {
        "trustedSigners": [{"name": "release", "publicKey": fake}],
        "verifier": {"image": "registry.example.com/modelward:1"},
    }
    assert apply(plane.kubectl, broken).returncode == 0
    try:
        wait_for(
            "the chart's scope to be restored",
            lambda: (
                skipped(plane, "ValidatingWebhookConfiguration") is None
                and skipped(plane, "MutatingWebhookConfiguration") is None
            ),
        )
        before = reviews(operator)
        assert apply(plane.kubectl, pod("reviewed", aside)).returncode == 0
        assert reviews(operator) > before  # every namespace is called again
    finally:
        plane.kubectl("delete", "clustermodelpolicy", "scope-broken", check=True)
    wait_skipped(plane, aside)


def test_enforced_namespaces_fail_closed_while_the_operator_is_stopped(
    plane: LocalControlPlane, operator: OperatorProcess
) -> None:
    """The operator never touches the enforced webhooks, and a stopped operator leaves the
    last scope in place (the chart's floor stays)."""
    enforced = namespace(plane, "scope-enforced", **{ENFORCED_LABEL: "true"})
    elsewhere = namespace(plane, "scope-idle")
    wait_skipped(plane, elsewhere)
    operator.pause()
    try:
        result = apply(plane.kubectl, pod("while-down", enforced), extra=("--dry-run=server",))
        assert result.returncode != 0 and "modelward" in result.stderr, result.stderr
        assert elsewhere in (skipped(plane, "ValidatingWebhookConfiguration") or [])
    finally:
        operator.resume()
