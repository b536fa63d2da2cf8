"""Pods really run on the harness's node: containers start, logs and exec go through the
kubelet, Deployments roll out, EndpointSlices list the ready pods."""

from __future__ import annotations

import json
from pathlib import Path

from modelward_dev.cluster import LocalCluster
from modelward_dev.controlplane import ToolRunner
from tests.e2e.node.conftest import (
    apply,
    busybox_pod,
    get,
    pod_state,
    wait_for_phase,
    wait_until,
)


def test_a_pod_runs_and_the_api_server_reads_its_logs_and_execs_in_it(
    cluster: LocalCluster, cluster_kubectl: ToolRunner, cluster_namespace: str
) -> None:
    body = busybox_pod(
        cluster, "hello", cluster_namespace, "echo hello from the node; exec sleep 3600"
    )
    assert apply(cluster_kubectl, body).returncode == 0
    pod = wait_for_phase(cluster_kubectl, "hello", cluster_namespace, "Running")
    assert pod["spec"]["nodeName"] == cluster.node.name  # placed by the real scheduler
    assert pod["status"]["podIP"].startswith(cluster.node.settings.gateway.rsplit(".", 1)[0])

    logs = wait_until(
        "the container's output",
        lambda: (
            "hello from the node"
            in cluster_kubectl("logs", "hello", "-n", cluster_namespace).stdout
        ),
    )
    assert logs
    uid = cluster_kubectl("exec", "hello", "-n", cluster_namespace, "--", "id", "-u", check=True)
    assert uid.stdout.strip() == "65532"


def test_a_failing_container_reports_its_exit_code_and_termination_message(
    cluster: LocalCluster, cluster_kubectl: ToolRunner, cluster_namespace: str
) -> None:
    body = busybox_pod(
        cluster,
        "fails",
        cluster_namespace,
        "echo -n 'written by the container' > /dev/termination-log; exit 3",
        restartPolicy="Never",
    )
    assert apply(cluster_kubectl, body).returncode == 0
    pod = wait_for_phase(cluster_kubectl, "fails", cluster_namespace, "Failed")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 3, pod_state(cluster_kubectl, "fails", cluster_namespace)
    assert terminated["message"] == "written by the container"


def test_a_deployment_rolls_out_and_its_endpointslice_lists_the_ready_pods(
    cluster: LocalCluster, cluster_kubectl: ToolRunner, cluster_namespace: str
) -> None:
    template = busybox_pod(cluster, "web", cluster_namespace, "exec httpd -f -p 8080")
    template["spec"]["containers"][0]["readinessProbe"] = {
        "tcpSocket": {"port": 8080},
        "periodSeconds": 1,
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": cluster_namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": template["spec"]},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": cluster_namespace},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    assert apply(cluster_kubectl, deployment, service).returncode == 0
    rollout = cluster_kubectl(
        "rollout",
        "status",
        "deployment/web",
        "-n",
        cluster_namespace,
        "--timeout=90s",
        timeout=100,
    )
    assert rollout.returncode == 0, rollout.stderr

    pods = get(cluster_kubectl, "pods", "-n", cluster_namespace, "-l", "app=web")["items"]
    pod_ips = {p["status"]["podIP"] for p in pods}
    assert len(pod_ips) == 2

    def ready_addresses() -> set[str]:
        slices = get(
            cluster_kubectl,
            "endpointslices",
            "-n",
            cluster_namespace,
            "-l",
            "kubernetes.io/service-name=web",
        )["items"]
        return {
            address
            for s in slices
            for e in s.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready")
            for address in e["addresses"]
        }

    wait_until(
        "the EndpointSlice to list both pods",
        lambda: ready_addresses() == pod_ips,
        explain=lambda: json.dumps(sorted(ready_addresses())),
    )


def test_the_pods_gateway_keeps_its_mac_address_while_pods_come_and_go(
    cluster: LocalCluster, cluster_kubectl: ToolRunner, cluster_namespace: str
) -> None:
    """A bridge whose MAC the kernel chose follows the lowest MAC among its ports, so it
    changes as pods' veths come and go; running pods keep the old one in their ARP cache and
    lose every packet to and from the host (API calls, webhook calls) for half a minute."""
    sysfs = Path("/sys/class/net") / cluster.node.settings.bridge
    mac = (sysfs / "address").read_text().strip()
    assert (sysfs / "addr_assign_type").read_text().strip() == "3"  # NET_ADDR_SET: ours, fixed
    service = cluster.control_plane.kubernetes_service_ip
    body = busybox_pod(cluster, "stays", cluster_namespace, "exec sleep 3600")
    assert apply(cluster_kubectl, body).returncode == 0
    wait_for_phase(cluster_kubectl, "stays", cluster_namespace, "Running")

    def api_server_answers() -> str:
        """The API server's plain-HTTP refusal, through the gateway and the Service stand-in
        (a cached stale gateway MAC makes this time out)."""
        request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n'; sleep 2"
        probe = f"({request}) | nc -w 3 {service} 443; cat /proc/net/arp"
        result = cluster_kubectl("exec", "stays", "-n", cluster_namespace, "--", "sh", "-c", probe)
        return result.stdout + result.stderr

    first = api_server_answers()
    assert "400 Bad Request" in first, first
    for name in ("comes", "goes"):
        brief = busybox_pod(cluster, name, cluster_namespace, "true", restartPolicy="Never")
        assert apply(cluster_kubectl, brief).returncode == 0
        wait_for_phase(cluster_kubectl, name, cluster_namespace, "Succeeded")
        cluster_kubectl("delete", "pod", name, "-n", cluster_namespace, "--wait", check=True)
    assert (sysfs / "address").read_text().strip() == mac
    again = api_server_answers()
    assert "400 Bad Request" in again and mac in again, again
