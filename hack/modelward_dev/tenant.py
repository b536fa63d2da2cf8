"""A tenant: the identity a workload author really has in a model-serving namespace.

modelward is a security control, so its protections are tested the way they are attacked: not
as the cluster admin, but as a ServiceAccount that holds exactly the built-in ``edit`` rules in
one namespace (create and change pods, workloads, Services, ConfigMaps, Secrets, RoleBindings
are *not* in ``edit``), talking to the real kube-apiserver with its own token.

``edit`` is an aggregated ClusterRole: its rules are filled in by kube-controller-manager's
aggregation controller from the ClusterRoles labelled ``aggregate-to-edit``. The harness's
control plane may run without a controller-manager, where ``edit`` has no rules yet, so the
tenant's Role is built by resolving the aggregation the same way the controller does (the
union of the rules of every ClusterRole its selectors match, recursively). The result is the
rule set a RoleBinding to ``edit`` grants in one namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from modelward_dev.controlplane import CommandError, ControlPlaneError, LocalControlPlane
from modelward_dev.lifecycle import StartStop

__all__ = ["Tenant", "resolve_cluster_role_rules"]

_RBAC = "/apis/rbac.authorization.k8s.io/v1"


def _selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """``matchLabels`` and ``matchExpressions`` (In, NotIn, Exists, DoesNotExist)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def resolve_cluster_role_rules(roles: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The rules ClusterRole ``name`` grants, with its aggregation resolved.

    Args:
        roles: every ClusterRole in the cluster (``items`` of a list).
        name: the ClusterRole to resolve.

    Raises:
        ControlPlaneError: no ClusterRole of that name exists.
    """
    by_name = {role["metadata"]["name"]: role for role in roles}
    if name not in by_name:
        raise ControlPlaneError(f"the API server has no ClusterRole {name!r}")
    rules: list[dict[str, Any]] = []
    seen: set[str] = set()

    def collect(role: dict[str, Any]) -> None:
        role_name = role["metadata"]["name"]
        if role_name in seen:
            return
        seen.add(role_name)
        for rule in role.get("rules") or []:
            if rule not in rules:
                rules.append(rule)
        for selector in (role.get("aggregationRule") or {}).get("clusterRoleSelectors") or []:
            for other in roles:
                if _selector_matches(selector, other["metadata"].get("labels") or {}):
                    collect(other)

    collect(by_name[name])
    return rules


class Tenant(StartStop):
    """A ServiceAccount with the ``edit`` rules in ``namespace``, and kubectl as that identity.

    ``start()`` creates the ServiceAccount, a Role holding ``edit``'s resolved rules and its
    RoleBinding, requests a token (TokenRequest API, one hour) and writes a kubeconfig;
    ``kubectl(...)`` then runs as the tenant. ``stop()`` removes the kubeconfig (the objects go
    with the test's namespace).
    """

    def __init__(
        self,
        *,
        control_plane: LocalControlPlane,
        namespace: str,
        name: str = "tenant",
        cluster_role: str = "edit",
        extra_rules: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """``extra_rules`` are granted beside the role's, e.g. ``pods/ephemeralcontainers`` for
        an on-call engineer who may ``kubectl debug`` (``edit`` does not include it)."""
        self.extra_rules = [dict(rule) for rule in extra_rules]
        self.control_plane = control_plane
        self.namespace = namespace
        self.name = name
        self.cluster_role = cluster_role
        self._dir: Path | None = None

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    @property
    def kubeconfig_path(self) -> Path:
        if self._dir is None:
            raise RuntimeError("the tenant has not been started")
        return self._dir / "kubeconfig"

    def start(self) -> None:
        plane = self.control_plane
        roles = self._admin("GET", f"{_RBAC}/clusterroles")["items"]
        rules = resolve_cluster_role_rules(roles, self.cluster_role) + self.extra_rules
        if not rules:
            raise ControlPlaneError(f"ClusterRole {self.cluster_role!r} grants nothing")
        namespaced = f"/api/v1/namespaces/{self.namespace}"
        self._admin(
            "POST",
            f"{namespaced}/serviceaccounts",
            {"metadata": {"name": self.name}},
        )
        role_name = f"{self.name}-{self.cluster_role}"
        self._admin(
            "POST",
            f"{_RBAC}/namespaces/{self.namespace}/roles",
            {"metadata": {"name": role_name}, "rules": rules},
        )
        self._admin(
            "POST",
            f"{_RBAC}/namespaces/{self.namespace}/rolebindings",
            {
                "metadata": {"name": role_name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": role_name,
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": self.name, "namespace": self.namespace}
                ],
            },
        )
        token = self._admin(
            "POST",
            f"{namespaced}/serviceaccounts/{self.name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            },
        )["status"]["token"]
        self._dir = Path(tempfile.mkdtemp(prefix="modelward-tenant-"))
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": plane.server_url,
                        "certificate-authority": str(plane.ca_path),
                    },
                }
            ],
            "users": [{"name": self.name, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "tenant",
                    "context": {"cluster": "local", "user": self.name, "namespace": self.namespace},
                }
            ],
            "current-context": "tenant",
        }
        fd = os.open(self.kubeconfig_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            yaml.safe_dump(config, file, sort_keys=False)

    def stop(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 60.0,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the tenant (same shape as ``LocalControlPlane.kubectl``)."""
        command = [
            str(self.control_plane.binaries.kubectl),
            f"--kubeconfig={self.kubeconfig_path}",
            *args,
        ]
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig_path))
        result = subprocess.run(
            command,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        if check and result.returncode != 0:
            raise CommandError(result.returncode, command, result.stdout, result.stderr)
        return result

    def can(self, verb: str, resource: str) -> bool:
        """``kubectl auth can-i`` as the tenant, in its namespace; ``pods/status`` means the
        subresource (kubectl itself would read it as the pod named "status")."""
        resource, _, subresource = resource.partition("/")
        extra = (f"--subresource={subresource}",) if subresource else ()
        result = self.kubectl("auth", "can-i", verb, resource, *extra, "-n", self.namespace)
        return result.stdout.strip() == "yes"

    def _admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.control_plane.api_request(method, path, body=body)
        if response.status >= 300:
            raise ControlPlaneError(
                f"{method} {path} as admin failed: HTTP {response.status} {response.message}"
            )
        return json.loads(response.text)
