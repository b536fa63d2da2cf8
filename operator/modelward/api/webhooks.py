"""What modelward's webhooks intercept: the single source for every webhook configuration.

The Helm chart's webhook templates and the test harness's locally registered configurations
are both checked against these rules, so that a kind added here is intercepted everywhere.
"""

from __future__ import annotations

from typing import Any

VALIDATE_PATH = "/validate"
MUTATE_PATH = "/mutate"

# (apiGroup, version, resources): pods and every built-in controller that stamps out pods.
POD_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("", "v1", ("pods", "pods/ephemeralcontainers", "replicationcontrollers")),
    ("apps", "v1", ("deployments", "statefulsets", "daemonsets", "replicasets")),
    ("batch", "v1", ("jobs", "cronjobs")),
)
# Everything that can route traffic from outside to pods (the transport rules' exposures):
# validated only, never patched. Gateway API routes are CRDs served at several versions
# (v1, v1beta1, v1alpha2, v1alpha3), hence "*"; rules for resources a cluster lacks are inert.
EXPOSURE_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("", "v1", ("services",)),
    ("networking.k8s.io", "v1", ("ingresses",)),
    (
        "gateway.networking.k8s.io",
        "*",
        ("httproutes", "grpcroutes", "tlsroutes", "tcproutes", "udproutes"),
    ),
)

#: ModelPolicyExceptions: their own webhook in each configuration, failing closed in every
#: intercepted namespace (an outage must not let a forged creator or an over-long lifetime in;
#: exceptions are rare, so refusing them during an outage costs little).
EXCEPTION_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("modelward.io", "v1alpha1", ("modelpolicyexceptions",)),
)
EXCEPTION_WEBHOOK_SUFFIX = "-exceptions"

# Who may reach the models (access rules, MW-ACC-*): namespaced bindings and the roles they
# grant, validated only, with the same namespace split as pods.
RBAC_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("rbac.authorization.k8s.io", "v1", ("roles", "rolebindings")),
)
# Their cluster-scoped twins go to a webhook of their own (``validate-rbac``): a namespace
# selector cannot apply to them, and its object selector leaves the API server's bootstrap
# roles alone (``kubernetes.io/bootstrapping: rbac-defaults``), which it rewrites at start-up
# after an upgrade: that write must never wait on modelward.
CLUSTER_RBAC_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("rbac.authorization.k8s.io", "v1", ("clusterroles", "clusterrolebindings")),
)
RBAC_WEBHOOK = "validate-rbac"
#: Fail open: only cluster administrators write cluster-scoped RBAC objects, and modelward must
#: never lock out its own upgrade (helm applies its ClusterRole) or a broken replica's fix;
#: what it misses while down shows in the access review.
RBAC_FAILURE_POLICY = "Ignore"
BOOTSTRAP_LABEL = "kubernetes.io/bootstrapping"


def cluster_rbac_rules() -> list[dict[str, Any]]:
    """The rules of the ``validate-rbac`` webhook (cluster-scoped RBAC objects)."""
    return [
        {
            "apiGroups": [group],
            "apiVersions": [version],
            "resources": list(resources),
            "operations": ["CREATE", "UPDATE"],
            "scope": "Cluster",
        }
        for group, version, resources in CLUSTER_RBAC_RULES
    ]


def rbac_object_selector() -> dict[str, Any]:
    """Everything but the API server's bootstrap RBAC objects (only administrators can write
    cluster-scoped RBAC objects, so the label is no tenant's way out)."""
    return {"matchExpressions": [{"key": BOOTSTRAP_LABEL, "operator": "DoesNotExist"}]}


#: Namespaces never intercepted, whatever the values say: a cluster must be able to restart.
ALWAYS_EXCLUDED_NAMESPACES: tuple[str, ...] = ("kube-system", "kube-node-lease")


def webhook_rules(*, include_exposures: bool, exceptions: bool = False) -> list[dict[str, Any]]:
    """The ``rules`` list of a webhook: CREATE and UPDATE only (deletes are never blocked).

    ``include_exposures`` (the validating webhook) adds exposures and namespaced RBAC objects,
    which are judged but never patched. ``exceptions``: the rules of the exception webhook
    instead."""
    groups = POD_RULES + (EXPOSURE_RULES + RBAC_RULES if include_exposures else ())
    if exceptions:
        groups = EXCEPTION_RULES
    return [
        {
            "apiGroups": [group],
            "apiVersions": [version],
            "resources": list(resources),
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced",
        }
        for group, version, resources in groups
    ]


def namespace_selector(excluded: tuple[str, ...]) -> dict[str, Any]:
    """A selector that leaves the system namespaces and ``excluded`` alone."""
    names = sorted(set(ALWAYS_EXCLUDED_NAMESPACES) | set(excluded))
    return {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": names}
        ]
    }


def webhook_configurations(
    *,
    name: str,
    client_config_for: dict[str, dict[str, Any]],
    excluded_namespaces: tuple[str, ...],
    failure_policy: str = "Fail",
    timeout_seconds: int = 5,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A ValidatingWebhookConfiguration and a MutatingWebhookConfiguration.

    ``client_config_for`` maps ``"validate"`` and ``"mutate"`` to a ``clientConfig`` (a
    ``service`` reference in a cluster, a ``url`` for a local process), each with its caBundle.
    ``sideEffects: NoneOnDryRun``: the webhook records Events, except for dry-run requests.
    """

    def webhook(kind: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "name": f"{kind}.modelward.io",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "NoneOnDryRun",
            "failurePolicy": failure_policy,
            "timeoutSeconds": timeout_seconds,
            "matchPolicy": "Equivalent",
            "namespaceSelector": namespace_selector(excluded_namespaces),
            "clientConfig": client_config_for[kind],
            "rules": rules,
        }

    def exception_webhook(kind: str) -> dict[str, Any]:
        hook = webhook(kind, webhook_rules(include_exposures=False, exceptions=True))
        hook["name"] = f"{kind}{EXCEPTION_WEBHOOK_SUFFIX}.modelward.io"
        hook["failurePolicy"] = "Fail"
        return hook

    rbac_hook = webhook("validate", cluster_rbac_rules())
    rbac_hook["name"] = f"{RBAC_WEBHOOK}.modelward.io"
    rbac_hook["objectSelector"] = rbac_object_selector()
    rbac_hook["failurePolicy"] = RBAC_FAILURE_POLICY
    # Its namespaceSelector is kept (harness and chart code scope every hook by one), though
    # the API server never applies it to a cluster-scoped object.
    validating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            webhook("validate", webhook_rules(include_exposures=True)),
            exception_webhook("validate"),
            rbac_hook,
        ],
    }
    mutating_hook = webhook("mutate", webhook_rules(include_exposures=False))
    mutating_hook["reinvocationPolicy"] = "IfNeeded"
    mutating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [mutating_hook, exception_webhook("mutate")],
    }
    return validating, mutating
