"""What the benchmarks send: a policy set enabling every rule family, a small and a large pod.

Both pods are what a model-serving team would plausibly submit: compliant with the Enforce
policies, missing a few fields the Patch policy fills (so ``/mutate`` returns a real JSONPatch)
and using a model image the team's Audit policy warns about (so both webhooks return warnings).
Nothing is denied, so validation runs every rule to the end and mutation builds its patch:
the most work either webhook does for one object.

The large pod is what controllers really send: several containers, dozens of env vars and
volumes, and ``managedFields`` mirroring the spec (a large share of a real review's size).
"""

from __future__ import annotations

import copy
import json
from typing import Any

NAMESPACE = "serving-bench"
NAMESPACE_LABELS = {"modelward.io/model-serving": "true", "team": "bench"}
DIGEST = "sha256:" + "3f5a9c0e7b21d4f8" * 4
SERVER_IMAGE = f"registry.example.com/serving/vllm-openai@{DIGEST}"
MODEL_IMAGE = f"registry.example.com/models/llama-3-8b-instruct@{DIGEST}"
#: Replaced by the load client with a counter of the same width, so that every review has its
#: own uid and pod name (Events are deduplicated by name; uids are checked in the answers).
UNIQUE = "@@@@@@@@"

API_VERSION = "modelward.io/v1alpha1"
#: A certificate Secret volume source that is TLS evidence (it projects tls.crt and tls.key).
TLS_SECRET: dict[str, Any] = {
    "secretName": "server-tls",
    "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}],
}
MATCH = {"namespaceSelector": {"matchLabels": {"modelward.io/model-serving": "true"}}}


def policy_objects(namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Four policies, every rule family, Patch + Enforce + Audit (modelled on the examples)."""
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "ClusterModelPolicy",
            "metadata": {"name": "bench-isolation"},
            "spec": {
                "mode": "Patch",
                "match": copy.deepcopy(MATCH),
                "isolation": {
                    "podSecurity": "restricted",
                    "runtimeClassNames": ["gvisor", "kata"],
                    "defaultRuntimeClassName": "gvisor",
                    "gpu": {
                        "resources": ["nvidia.com/gpu"],
                        "nodeSelector": {"nvidia.com/gpu.present": "true"},
                        "toleration": {
                            "key": "nvidia.com/gpu",
                            "operator": "Exists",
                            "effect": "NoSchedule",
                        },
                    },
                    "forbidServiceAccountTokenAutomount": True,
                    "allowedServiceAccountTokenAudiences": ["vault"],
                    "requireDefaultDenyNetworkPolicy": True,
                },
            },
        },
        {
            "apiVersion": API_VERSION,
            "kind": "ClusterModelPolicy",
            "metadata": {"name": "bench-images"},
            "spec": {
                "mode": "Enforce",
                "match": copy.deepcopy(MATCH),
                "images": {
                    "requireDigest": True,
                    "allowedRegistries": [
                        "registry.example.com/serving/*",
                        "registry.example.com/models/*",
                    ],
                    "forbiddenTags": ["latest"],
                },
            },
        },
        {
            "apiVersion": API_VERSION,
            "kind": "ClusterModelPolicy",
            "metadata": {"name": "bench-transport-secrets"},
            "spec": {
                "mode": "Enforce",
                "match": copy.deepcopy(MATCH),
                "transport": {
                    "requireTLS": True,
                    "meshes": ["istio", "linkerd"],
                    "tlsSecretNames": ["*-tls"],
                    "ingress": {
                        "requireTLS": True,
                        "rateLimitAnnotations": ["nginx.ingress.kubernetes.io/limit-rps"],
                    },
                },
                "secrets": {"forbidLiteralCredentials": True, "forbidLiteralSystemPrompts": True},
            },
        },
        {
            "apiVersion": API_VERSION,
            "kind": "ModelPolicy",
            "metadata": {"name": "bench-team-audit", "namespace": namespace},
            "spec": {
                "mode": "Audit",
                "images": {
                    "requireDigest": True,
                    "allowedRegistries": ["registry.example.com/serving/*"],
                },
                "secrets": {"forbidLiteralCredentials": True, "allowedEnvNames": ["BENCH_*"]},
            },
        },
    ]


def filler_policy_object(index: int) -> dict[str, Any]:
    """A policy that selects one namespace nobody uses: cached, never matching a review."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterModelPolicy",
        "metadata": {"name": f"bench-filler-{index:03d}"},
        "spec": {
            "mode": ["Enforce", "Patch", "Audit"][index % 3],
            "match": {"namespaces": [f"unused-{index:03d}-*"]},
            "images": {"requireDigest": True, "allowedRegistries": ["registry.example.com/*"]},
            "isolation": {"podSecurity": "restricted", "runtimeClassNames": ["gvisor"]},
            "transport": {"requireTLS": True},
            "secrets": {"forbidLiteralCredentials": True},
        },
    }


# -- pods ------------------------------------------------------------------------------------


def _hardened(name: str, image: str, **extra: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    container.update(extra)
    return container


def small_pod(namespace: str = NAMESPACE) -> dict[str, Any]:
    """One container; the Patch policy sets runtimeClassName, the token and capabilities."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"small-{UNIQUE}",
            "namespace": namespace,
            "labels": {"app": "small-model"},
        },
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "server",
                    # Allowed by the cluster policy, outside the team's Audit list: a warning.
                    "image": MODEL_IMAGE.replace("llama-3-8b-instruct", "small-server"),
                    "args": ["--model", "/models/small", "--port", "8443"],
                    "ports": [{"containerPort": 8443, "name": "https", "protocol": "TCP"}],
                    "env": [{"name": "MODEL_NAME", "value": "small"}],
                    "securityContext": {"allowPrivilegeEscalation": False},
                    "volumeMounts": [{"name": "server-tls", "mountPath": "/tls", "readOnly": True}],
                }
            ],
            "volumes": [{"name": "server-tls", "secret": copy.deepcopy(TLS_SECRET)}],
        },
    }


_SERVING_ENV = [
    ("MODEL_NAME", "llama-3-8b-instruct"),
    ("MODEL_DIR", "/models/llama-3-8b-instruct"),
    ("HF_HOME", "/models/.cache/huggingface"),
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("VLLM_PORT", "8443"),
    ("VLLM_HOST", "0.0.0.0"),
    ("VLLM_TENSOR_PARALLEL_SIZE", "1"),
    ("VLLM_MAX_MODEL_LEN", "8192"),
    ("VLLM_GPU_MEMORY_UTILIZATION", "0.92"),
    ("VLLM_MAX_NUM_SEQS", "256"),
    ("VLLM_DTYPE", "bfloat16"),
    ("VLLM_LOGGING_LEVEL", "INFO"),
    ("VLLM_WORKER_MULTIPROC_METHOD", "spawn"),
    ("OMP_NUM_THREADS", "4"),
    ("CUDA_VISIBLE_DEVICES", "0"),
    ("NCCL_DEBUG", "WARN"),
    ("PYTHONUNBUFFERED", "1"),
    ("TLS_CERT_FILE", "/tls/tls.crt"),
    ("TLS_KEY_FILE", "/tls/tls.key"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel-collector.observability.svc:4317"),
    ("OTEL_SERVICE_NAME", "llama-3-8b-instruct"),
    ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
    ("OTEL_TRACES_SAMPLER_ARG", "0.05"),
    ("PROMETHEUS_MULTIPROC_DIR", "/tmp/prometheus"),
    ("LOG_FORMAT", "json"),
    ("REQUEST_TIMEOUT_SECONDS", "120"),
    ("MAX_CONCURRENT_REQUESTS", "64"),
    ("TOKENIZER_MODE", "auto"),
    ("BENCH_BUILD_ID", "2026.11.25-1"),
]


def _env(prefix: str, count: int) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": name, "value": value} for name, value in _SERVING_ENV[:count]
    ]
    env += [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {
            "name": f"{prefix}_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "serving-api-keys", "key": "api-key"}},
        },
        {
            "name": f"{prefix}_SYSTEM_PROMPT",
            "valueFrom": {"secretKeyRef": {"name": "serving-prompts", "key": "system"}},
        },
    ]
    return env


def _mounts(names: list[str]) -> list[dict[str, Any]]:
    return [{"name": n, "mountPath": f"/mnt/{n}", "readOnly": n != "scratch"} for n in names]


def large_pod(namespace: str = NAMESPACE) -> dict[str, Any]:
    """An init container, a GPU model server and two sidecars, 24 volumes, managedFields."""
    config_volumes = [f"config-{i:02d}" for i in range(10)]
    volumes: list[dict[str, Any]] = [
        {"name": "server-tls", "secret": {**TLS_SECRET, "defaultMode": 288}},
        {"name": "model", "image": {"reference": MODEL_IMAGE, "pullPolicy": "IfNotPresent"}},
        {"name": "scratch", "emptyDir": {"sizeLimit": "20Gi"}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
        {"name": "cache", "persistentVolumeClaim": {"claimName": "model-cache"}},
        {
            "name": "token",
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "audience": "vault",
                            "expirationSeconds": 3600,
                            "path": "token",
                        }
                    },
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                ]
            },
        },
        {
            "name": "podinfo",
            "downwardAPI": {
                "items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                ]
            },
        },
        *(
            {"name": n, "configMap": {"name": f"serving-{n}", "defaultMode": 420}}
            for n in config_volumes
        ),
        *(
            {"name": f"secret-{i:02d}", "secret": {"secretName": f"serving-secret-{i:02d}"}}
            for i in range(7)
        ),
    ]
    probe = {
        "httpGet": {"path": "/health", "port": 8443, "scheme": "HTTPS"},
        "periodSeconds": 10,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    server = _hardened(
        "server",
        SERVER_IMAGE,
        args=[
            "--model",
            "/mnt/model",
            "--port",
            "8443",
            "--ssl-certfile",
            "/tls/tls.crt",
            "--ssl-keyfile",
            "/tls/tls.key",
            "--max-model-len",
            "8192",
            "--gpu-memory-utilization",
            "0.92",
            "--served-model-name",
            "llama-3-8b-instruct",
        ],
        ports=[
            {"containerPort": 8443, "name": "https", "protocol": "TCP"},
            {"containerPort": 9090, "name": "metrics", "protocol": "TCP"},
        ],
        env=_env("SERVER", 26),
        resources={
            "limits": {"cpu": "8", "memory": "48Gi", "nvidia.com/gpu": "1"},
            "requests": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": "1"},
        },
        volumeMounts=[
            {"name": "server-tls", "mountPath": "/tls", "readOnly": True},
            *_mounts(["model", "scratch", "shm", "cache", "token", "podinfo", *config_volumes]),
        ],
        readinessProbe=probe,
        livenessProbe={**probe, "initialDelaySeconds": 120},
        startupProbe={**probe, "failureThreshold": 60},
    )
    router = _hardened(
        "router",
        SERVER_IMAGE.replace("vllm-openai", "router"),
        ports=[{"containerPort": 8444, "name": "router", "protocol": "TCP"}],
        env=_env("ROUTER", 18),
        resources={
            "limits": {"cpu": "1", "memory": "1Gi"},
            "requests": {"cpu": "250m", "memory": "256Mi"},
        },
        volumeMounts=[
            {"name": "server-tls", "mountPath": "/tls", "readOnly": True},
            *_mounts(["podinfo", *config_volumes[:4]]),
        ],
        readinessProbe={**probe, "httpGet": {"path": "/ready", "port": 8444, "scheme": "HTTPS"}},
    )
    exporter = _hardened(
        "exporter",
        SERVER_IMAGE.replace("vllm-openai", "metrics-exporter"),
        env=_env("EXPORTER", 14),
        resources={"limits": {"cpu": "200m", "memory": "128Mi"}},
        volumeMounts=_mounts(["podinfo", "scratch"]),
    )
    # The exporter forgot to drop capabilities: the Patch policy appends ALL.
    exporter["securityContext"] = {"allowPrivilegeEscalation": False}
    init = _hardened(
        "fetch-model",
        SERVER_IMAGE.replace("vllm-openai", "model-fetcher"),
        args=["--verify", "--target", "/mnt/cache"],
        env=_env("FETCH", 12),
        volumeMounts=_mounts(["cache", "token", "scratch"]),
    )
    labels = {
        "app.kubernetes.io/name": "llama-3-8b-instruct",
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "inference",
        "app.kubernetes.io/managed-by": "serving-operator",
        "app.kubernetes.io/version": "0.9.2",
        "pod-template-hash": "7d9f8c6b5",
        "model.example.com/family": "llama-3",
    }
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9090",
        "kubectl.kubernetes.io/default-container": "server",
        "serving.example.com/revision": "42",
        "serving.example.com/config-hash": "c2a3b5e0f4d1",
    }
    spec: dict[str, Any] = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "fsGroup": 65532,
        },
        "serviceAccountName": "model-server",
        "priorityClassName": "inference-high",
        "terminationGracePeriodSeconds": 60,
        "dnsPolicy": "ClusterFirst",
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
        "enableServiceLinks": False,
        "initContainers": [init],
        "containers": [server, router, exporter],
        "volumes": volumes,
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "llama-3-8b-instruct"}},
            }
        ],
    }
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"llama-3-8b-instruct-7d9f8c6b5-{UNIQUE}",
            "generateName": "llama-3-8b-instruct-7d9f8c6b5-",
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "llama-3-8b-instruct-7d9f8c6b5",
                    "uid": "0e6a4f7c-58b1-4d8e-9a43-2f1c6d9b7e10",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }
    pod["metadata"]["managedFields"] = [
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2026-11-25T10:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": _fields_v1(
                {
                    "metadata": {
                        k: pod["metadata"][k]
                        for k in ("generateName", "labels", "annotations", "ownerReferences")
                    },
                    "spec": spec,
                }
            ),
        }
    ]
    return pod


def _fields_v1(value: Any) -> Any:
    """The shape of a managedFields ``fieldsV1`` entry describing ``value``."""
    if isinstance(value, dict):
        return {".": {}, **{f"f:{k}": _fields_v1(v) for k, v in value.items()}} if value else {}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out: dict[str, Any] = {}
        for item in value:
            key = {k: item[k] for k in ("name", "containerPort", "key", "path") if k in item}
            if not key:
                key = {"name": json.dumps(item, sort_keys=True)[:32]}
            out["k:" + json.dumps(key, separators=(",", ":"))] = _fields_v1(item)
        return out
    return {}


# -- AdmissionReview bodies --------------------------------------------------------------------


def admission_review(
    obj: dict[str, Any],
    *,
    uid: str = f"00000000-0000-4000-8000-0000{UNIQUE}",
    dry_run: bool = False,
) -> dict[str, Any]:
    """An AdmissionReview v1 for a CREATE of ``obj``, as kube-apiserver 1.37 sends it."""
    meta = obj["metadata"]
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": obj["kind"]},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": obj["kind"]},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": meta["name"],
            "namespace": meta["namespace"],
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "5b0f8d2e-3c4a-4e6f-8a1b-9c7d2e5f4a30",
                "groups": [
                    "system:serviceaccounts",
                    "system:serviceaccounts:kube-system",
                    "system:authenticated",
                ],
            },
            "object": obj,
            "oldObject": None,
            "dryRun": dry_run,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


def review_body(obj: dict[str, Any], **kwargs: Any) -> bytes:
    """The review as the API server sends it: compact JSON."""
    return json.dumps(admission_review(obj, **kwargs), separators=(",", ":")).encode()


def concrete(body: bytes, index: int = 0) -> bytes:
    """A body with its placeholders filled in (the load client does this per request)."""
    return body.replace(UNIQUE.encode(), f"{index:08d}".encode())


PODS = {"small": small_pod, "large": large_pod}


def pod_object(size: str, namespace: str = NAMESPACE, index: int = 0) -> dict[str, Any]:
    """A concrete pod (placeholders filled), e.g. for a create through the API server."""
    text = json.dumps(PODS[size](namespace)).replace(UNIQUE, f"{index:08d}")
    pod: dict[str, Any] = json.loads(text)
    return pod


def cluster_state(namespace: str = NAMESPACE) -> Any:
    """A ``ClusterState`` as the operator builds it from a cluster holding the bench objects.

    The namespace carries the model-serving label and a default-deny NetworkPolicy; the four
    policies go through the same parsing as a watch event.
    """
    from modelward.engine import NamespaceFacts, parse_policy
    from modelward.state import ClusterState

    state = ClusterState()
    state.put_namespace(NamespaceFacts(namespace, dict(NAMESPACE_LABELS)))
    state.put_network_policy(namespace, "default-deny", default_deny=True)
    for obj in policy_objects(namespace):
        policy = parse_policy(obj)
        meta = obj["metadata"]
        state.put_policy(
            (obj["kind"], meta.get("namespace"), meta["name"]),
            policy=policy,
            error=None,
            generation=1,
            resource_version=None,
        )
    state.ready = True
    return state
