"""Leader hand-over and verifier results that arrive without a leader (issue 10 #5, issue 9 #10).

Several ``modelward run`` processes against a control plane of this module's own: the session
operator records every pod's verifier results, so it must not see these. Each assertion rests
on an order of events, not on how fast anything is: the Lease no longer names a replica once
that replica has exited; a result is recorded once an operator has caught up, and a later
operator's warning about a newer pod proves it had its chance to record the older one again.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelward_dev.controlplane import LocalControlPlane, ToolRunner
from modelward_dev.operator_process import OperatorProcess
from tests.conftest import own_control_plane
from tests.e2e.helpers import apply, apply_policy, get_json, wait_for
from tests.e2e.test_integrity import (  # noqa: F401 (signed_model is a fixture)
    _report,
    _run_verifier,
    integrity_policy,
    model_pod,
    signed_model,
)

pytestmark = [pytest.mark.slow]

SYSTEM = "modelward-system"
LEASE = "modelward-leader"
LEASE_SECONDS = 30


@pytest.fixture(scope="module")
def plane() -> Iterator[LocalControlPlane]:
    with own_control_plane() as control_plane:
        yield control_plane


class Operators:
    """Operators named op-a, op-b …, each with its own webhook configuration."""

    def __init__(self, plane: LocalControlPlane, tmp_path: Path) -> None:
        self.plane = plane
        self.tmp_path = tmp_path
        self.started: list[OperatorProcess] = []

    def start(self, name: str) -> OperatorProcess:
        process = OperatorProcess(
            control_plane=self.plane,
            namespace=SYSTEM,
            configuration_name=f"mw-{name}",
            extra_args=["--audit-interval=0"],
            env={"POD_NAME": f"op-{name}"},
            work_dir=self.tmp_path / name,
        )
        self.started.append(process)
        process.start()
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()


@pytest.fixture
def operators(plane: LocalControlPlane, tmp_path: Path) -> Iterator[Operators]:
    managed = Operators(plane, tmp_path)
    try:
        yield managed
    finally:
        managed.stop_all()


@pytest.fixture
def namespace(plane: LocalControlPlane, request: pytest.FixtureRequest) -> str:
    name = "t-" + request.node.name.replace("_", "-")[5:40].strip("-")
    plane.kubectl("create", "namespace", name, check=True)
    return name


def lease(kubectl: ToolRunner) -> dict[str, Any]:
    spec: dict[str, Any] = get_json(kubectl, "lease", LEASE, "-n", SYSTEM)["spec"]
    return spec


def holder(kubectl: ToolRunner) -> str:
    found = kubectl("get", "lease", LEASE, "-n", SYSTEM, "-o", "jsonpath={.spec.holderIdentity}")
    return str(found.stdout) if found.returncode == 0 else ""


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_graceful_stop_hands_the_lease_over_at_once(
    plane: LocalControlPlane, operators: Operators
) -> None:
    kubectl = plane.kubectl
    a = operators.start("a")
    wait_for("op-a to hold the Lease", lambda: holder(kubectl).startswith("op-a-"))
    operators.start("b")
    assert holder(kubectl).startswith("op-a-")
    transitions = int(lease(kubectl).get("leaseTransitions") or 0)

    a.stop()
    exited = dt.datetime.now(dt.UTC)
    # Ordering: op-a has exited, and the Lease already does not name it (released, or taken
    # by op-b). Without the release it would name op-a for another lease duration.
    assert not holder(kubectl).startswith("op-a-"), lease(kubectl)
    assert "released the leader Lease" in a.log_path.read_text()

    wait_for("op-b to take the Lease", lambda: holder(kubectl).startswith("op-b-"))
    spec = lease(kubectl)
    assert int(spec["leaseTransitions"]) == transitions + 1
    # Taken well before the lease could have expired (op-b polls every 2 s; waiting the
    # lease out would put this at least 20 s after op-a's exit).
    assert _time(spec["acquireTime"]) < exited + dt.timedelta(seconds=LEASE_SECONDS / 2)


def _events(kubectl: ToolRunner, namespace: str, reason: str) -> list[dict[str, Any]]:
    return [
        e for e in get_json(kubectl, "events", "-n", namespace)["items"] if e["reason"] == reason
    ]


def test_a_result_that_arrives_without_a_leader_is_recorded_once(
    plane: LocalControlPlane,
    operators: Operators,
    namespace: str,
    signed_model: dict[str, Path],  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    kubectl = plane.kubectl
    first = operators.start("c")
    policy = apply_policy(
        kubectl, integrity_policy(namespace, signed_model["public"].read_text(), "Patch")
    )
    assert apply(kubectl, model_pod("llm", namespace)).returncode == 0
    container = get_json(kubectl, "pod", "llm", "-n", namespace)["spec"]["initContainers"][-1][
        "name"
    ]
    first.stop()  # no operator runs from here …

    message = _run_verifier(
        signed_model, tmp_path, f"ClusterModelPolicy {policy['metadata']['name']}"
    )
    digest = json.loads(message)["digest"]
    _report(kubectl, "llm", namespace, container, message, 0)  # … when the result arrives

    second = operators.start("d")  # catches up on taking the Lease
    wait_for("the ModelVerified event", lambda: bool(_events(kubectl, namespace, "ModelVerified")))
    model = digest.replace(":", "-")
    spec = get_json(kubectl, "deployedmodel", model, "-n", namespace)["spec"]
    assert spec["verifications"] == 1 and spec["lastResult"] == "verified"
    assert len(spec["recorded"]) == 1 and spec["recorded"][0].endswith(f"/{container}/verified")
    second.stop()

    third = operators.start("e")  # a restart: sees the same pod again, must not count it
    wait_for(
        "the new operator's catch-up",
        lambda: "caught up on verifier results" in third.log_path.read_text(),
    )
    # A newer forged pod: once op-e has warned about it, op-e has handled the older pod too
    # (Events are posted in order).
    forged = model_pod("forged", namespace)
    forged["spec"]["initContainers"] = [
        {"name": "modelward-verify-0badc0de", "image": "attacker.example.com/fake:1"}
    ]
    assert apply(kubectl, forged).returncode == 0
    _report(kubectl, "forged", namespace, "modelward-verify-0badc0de", message, 0)
    wait_for(
        "op-e's UnrecognisedVerifier warning",
        lambda: bool(_events(kubectl, namespace, "UnrecognisedVerifier")),
    )
    assert len(_events(kubectl, namespace, "ModelVerified")) == 1
    spec = get_json(kubectl, "deployedmodel", model, "-n", namespace)["spec"]
    assert spec["verifications"] == 1
