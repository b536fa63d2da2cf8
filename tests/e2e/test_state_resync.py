"""Deletions the operator's watches never saw: the cluster state must not keep them.

The operator is paused (SIGSTOP) while objects change; meanwhile etcd's history is compacted and
kube-apiserver restarted, so every watch breaks and cannot resume from where it was: kopf gets
"410 Gone" and re-lists, and a re-list never reports what was deleted. A default-deny
NetworkPolicy deleted this way kept MW-ISO-014 passing until the operator restarted; the state
resync (``controller/resync.py``) must make it fail again within its interval.

This module runs its own control plane: restarting the session's API server would disturb the
other tests' operator.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelward_dev.controlplane import LocalControlPlane, ToolRunner
from modelward_dev.operator_process import OperatorProcess
from tests.conftest import own_control_plane
from tests.e2e.helpers import apply, apply_policy, default_deny, pod, wait_for

#: The resync interval given to the operator; the deletions must show within a few of them.
RESYNC_SECONDS = 3.0


@pytest.fixture(scope="module")
def own_plane() -> Iterator[LocalControlPlane]:
    with own_control_plane() as plane:
        yield plane


@pytest.fixture(scope="module")
def own_operator(own_plane: LocalControlPlane, tmp_path_factory: Any) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        control_plane=own_plane,
        extra_args=(
            f"--state-resync-interval={RESYNC_SECONDS}",
            "--audit-interval=0",
            "--no-events",
        ),
        work_dir=Path(tmp_path_factory.mktemp("resync-operator")),
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _namespace(kubectl: ToolRunner, name: str, labels: dict[str, str]) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    assert apply(kubectl, body).returncode == 0


def _dry_run(kubectl: ToolRunner, namespace: str) -> str:
    """'' when the pod is admitted, else the API server's refusal."""
    result = apply(kubectl, pod("model", namespace), extra=("--dry-run=server",))
    return "" if result.returncode == 0 else result.stderr


def test_objects_deleted_while_the_watches_were_down_leave_the_state(
    own_plane: LocalControlPlane, own_operator: OperatorProcess
) -> None:
    kubectl = own_plane.kubectl
    serving = {"modelward.io/model-serving": "true"}
    _namespace(kubectl, "guarded", serving)
    _namespace(kubectl, "joins-later", {})
    policy = {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": "ClusterModelPolicy",
        "metadata": {"name": "isolation"},
        "spec": {
            "mode": "Enforce",
            "match": {"namespaceSelector": {"matchLabels": serving}},
            "isolation": {},
        },
    }
    apply_policy(kubectl, policy)
    assert apply(kubectl, default_deny("guarded")).returncode == 0
    wait_for(
        "the default-deny policy to reach the state", lambda: _dry_run(kubectl, "guarded") == ""
    )
    assert _dry_run(kubectl, "joins-later") == ""  # not selected yet

    own_operator.pause()
    try:
        # Cut the operator's watches first: events already sent to a paused process wait in
        # its socket buffer and would be read on resume.
        own_plane.restart_apiserver()
        kubectl("delete", "networkpolicy", "default-deny", "-n", "guarded", check=True)
        kubectl("label", "namespace", "joins-later", "modelward.io/model-serving=true", check=True)
        # Forget the history (as the API server's own compaction does every 5 minutes) and
        # restart once more, so no watch cache holds the deletion: the operator's watches
        # must resume with "410 Gone" and re-list.
        own_plane.compact_etcd()
        own_plane.restart_apiserver()
    finally:
        own_operator.resume()

    def refused(namespace: str) -> bool:
        return "[MW-ISO-014]" in _dry_run(kubectl, namespace)

    # Within the resync interval (plus the time to notice the broken watch and re-list).
    wait_for(
        "MW-ISO-014 for the namespace whose default-deny policy was deleted",
        lambda: refused("guarded"),
        timeout=5 * RESYNC_SECONDS + 20,
    )
    wait_for(
        "MW-ISO-014 for the namespace labelled while the watch was down",
        lambda: refused("joins-later"),
        timeout=5 * RESYNC_SECONDS + 20,
    )
    assert "resync: 1 NetworkPolicy deleted while a watch missed it" in own_operator.log_tail(400)
