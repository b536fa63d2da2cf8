"""The node leaves the host unchanged: a second node is started, runs a pod, is stopped, and
the paths, mounts, links, cgroups, sysctls and iptables rules it could touch are compared
before and after."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from modelward_dev.cluster import LocalCluster
from modelward_dev.controlplane import ToolRunner
from modelward_dev.node import HOST_FOLDERS, SYSCTLS, LocalNode, NodeSettings
from tests.e2e.node.conftest import apply, busybox_pod, wait_for_phase

#: Paths written by kubelet, containerd, runc or the CNI plugins unless they are contained.
FIXED_PATHS = (
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/var/lib/containerd",
    "/var/lib/nri",
    "/var/log/containers",
    "/var/log/pods",
    "/run/containerd",
    "/run/nri",
    "/run/mount",
    "/run/netns",
    "/run/runc",
    "/etc/cni",
    "/etc/cdi",
    "/etc/nri",
    "/opt/cni",
    "/opt/containerd",
    "/opt/nri",
)


def _tree(path: str) -> list[str]:
    if not os.path.lexists(path):
        return []
    found = [path]
    for root, dirs, files in os.walk(path):
        found += [os.path.join(root, name) for name in dirs + files]
    return sorted(found)


def _links(ignore_master: str) -> list[str]:
    """Network links, without the veths of the session cluster's pods (they come and go)."""
    names = []
    for link in sorted(Path("/sys/class/net").iterdir()):
        master = link / "master"
        if master.exists() and master.resolve().name == ignore_master:
            continue
        names.append(link.name)
    return names


def _iptables() -> list[str]:
    result = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False)
    return [
        line
        for line in result.stdout.splitlines()
        if not line.startswith("#") and not line.startswith(":")
    ]


def snapshot(session_bridge: str) -> dict[str, object]:
    cgroups = {}
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] in ("cgroup", "cgroup2"):
            cgroups[fields[1]] = sorted(p.name for p in Path(fields[1]).iterdir() if p.is_dir())
    return {
        "fixed paths": {path: _tree(path) for path in FIXED_PATHS},
        "top-level entries": {folder: sorted(os.listdir(folder)) for folder in HOST_FOLDERS},
        "mounts": sorted(line.split()[4] for line in open("/proc/self/mountinfo")),
        "links": _links(session_bridge),
        "cgroups": cgroups,
        "sysctls": {name: Path("/proc/sys", name).read_text() for name in SYSCTLS},
        "iptables": _iptables(),
    }


def test_a_node_that_ran_a_pod_leaves_the_host_unchanged(
    cluster: LocalCluster, cluster_kubectl: ToolRunner, cluster_namespace: str
) -> None:
    session_bridge = cluster.node.settings.bridge
    before = snapshot(session_bridge)
    node = LocalNode(
        control_plane=cluster.control_plane,
        registry_host=cluster.registry.host,
        pause_image=cluster.image("pause"),
        settings=NodeSettings(
            name="host-check",
            cgroup_root="/modelward-node-host-check",
            bridge="mwbr-check",
            subnet="10.86.0.0/24",
            gateway="10.86.0.1",
        ),
    )
    node.start()
    try:
        assert Path("/sys/class/net/mwbr-check").exists()
        assert all(folder.is_dir() for folder in node.cgroup_folders())
        body = busybox_pod(
            cluster, "on-check-node", cluster_namespace, "echo ok", restartPolicy="Never"
        )
        body["spec"]["nodeName"] = "host-check"
        assert apply(cluster_kubectl, body).returncode == 0
        wait_for_phase(cluster_kubectl, "on-check-node", cluster_namespace, "Succeeded")
        # While it runs, the sysctls it wants are only seen inside its namespace.
        assert Path("/proc/sys/vm/overcommit_memory").read_text() == str(
            before["sysctls"]["vm/overcommit_memory"]  # type: ignore[index]
        )
    finally:
        node.stop()
    after = snapshot(session_bridge)
    for key in before:
        assert after[key] == before[key], f"{key} changed"
    assert not Path("/sys/class/net/mwbr-check").exists()
    response = cluster.control_plane.api_request("GET", "/api/v1/nodes/host-check")
    assert response.status == 404
