"""In-cluster login dials the address the kubelet gave the pod, not a DNS name."""

from __future__ import annotations

import kopf

from modelward.controller.handlers import in_cluster_server

INFO = kopf.ConnectionInfo(server="https://kubernetes.default.svc", token="t", ca_path="/ca")


def test_the_service_host_and_port_from_the_environment_are_used() -> None:
    info = in_cluster_server(
        INFO, {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}
    )
    assert info.server == "https://10.0.0.1:6443"
    assert info.token == "t" and info.ca_path == "/ca"  # credentials unchanged


def test_an_ipv6_service_host_is_bracketed() -> None:
    info = in_cluster_server(INFO, {"KUBERNETES_SERVICE_HOST": "fd00::1"})
    assert info.server == "https://[fd00::1]:443"


def test_without_the_environment_kopfs_default_is_kept() -> None:
    assert in_cluster_server(INFO, {}) is INFO
