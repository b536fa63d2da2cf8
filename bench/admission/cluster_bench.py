"""Phases 4-5: through a real kube-apiserver, and the operator's memory.

One ``LocalControlPlane`` (etcd + kube-apiserver 1.37) and one ``OperatorProcess`` (``modelward
run`` as a subprocess, webhooks registered by URL) serve both phases.

Phase 4 times server-side dry-run Pod creates sent straight to the API server's HTTP API (a
keep-alive connection with the admin client certificate, no kubectl) in three arms: modelward's
two webhooks registered, the same two webhooks (rules, selectors, timeouts) served by the no-op
app of phase 3, and none. The arms alternate in blocks (A B C, then C B A), and each switch of
webhook configurations is confirmed from what the API server answers before timing starts, so
that drift hits every arm alike and no request is timed against a half-applied configuration.

Phase 5 reads the operator's RSS from /proc: after start-up, across 100,000 reviews sent to
its webhook port (the same load client as phase 2, mixed small/large, validate/mutate, not
dry-run, so Events are recorded, rate limited, and posted), and with many objects in the
cluster: the kinds it caches (policies, namespaces, NetworkPolicies, Services) and Pods, which
it watches (for verifier results) but does not keep.
"""

from __future__ import annotations

import base64
import concurrent.futures
import copy
import http.client
import json
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from bench.admission import workloads
from bench.admission.https_bench import (
    ROOT,
    ServerProcess,
    cpu_seconds,
    rss_bytes,
    run_client,
    serving_certificate,
    start_server,
    write_bodies,
)
from bench.admission.stats import summarize_ns

MIB = 1024 * 1024
WEBHOOK_API = "/apis/admissionregistration.k8s.io/v1"
POLICY_API = "/apis/modelward.io/v1alpha1"


class Api:
    """A keep-alive HTTPS client for the API server, as the admin user; one connection per
    thread. Any status is returned, not raised."""

    def __init__(self, plane: Any) -> None:
        url = urlparse(plane.server_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 443
        self.context = ssl.create_default_context(cafile=str(plane.ca_path))
        self.context.load_cert_chain(str(plane.admin_cert_path), str(plane.admin_key_path))
        self.local = threading.local()

    def _connection(self) -> http.client.HTTPSConnection:
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = http.client.HTTPSConnection(
                self.host, self.port, context=self.context, timeout=30
            )
            self.local.connection = connection
        return connection

    def request(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None
    ) -> tuple[int, dict[str, Any]]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        for attempt in (1, 2):
            connection = self._connection()
            try:
                connection.request(method, path, body=data, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                self.local.warnings = response.headers.get_all("Warning") or []
                break
            except (http.client.HTTPException, OSError):
                connection.close()
                self.local.connection = None
                if attempt == 2:
                    raise
        try:
            parsed = json.loads(payload) if payload else {}
        except ValueError:
            parsed = {"text": payload.decode("utf-8", "replace")}
        return response.status, parsed if isinstance(parsed, dict) else {"value": parsed}

    def last_warnings(self) -> list[str]:
        """The Warning headers of this thread's last answer (admission warnings among them)."""
        return list(getattr(self.local, "warnings", []))

    def create(self, path: str, body: Any) -> None:
        status, answer = self.request("POST", path, body)
        if status not in (200, 201, 409):
            raise RuntimeError(f"POST {path}: HTTP {status}: {answer.get('message', answer)}")


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


# -- set-up -------------------------------------------------------------------------------------


def install_crds(api: Api) -> None:
    names = []
    for path in sorted((ROOT / "manifests" / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
                names.append(doc["metadata"]["name"])

    def established() -> bool:
        for name in names:
            _, crd = api.request(
                "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
            )
            status = crd.get("status") or {}
            conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
            if conditions.get("Established") != "True":
                return False
        return True

    wait_until("the CRDs to be Established", established)


def policy_path(obj: dict[str, Any]) -> str:
    if obj["kind"] == "ModelPolicy":
        return f"{POLICY_API}/namespaces/{obj['metadata']['namespace']}/modelpolicies"
    return f"{POLICY_API}/clustermodelpolicies"


def install_bench_objects(api: Api) -> None:
    """RuntimeClasses, a PriorityClass, the labelled namespace with a default-deny
    NetworkPolicy, the four policies."""
    for name, handler in (("gvisor", "runsc"), ("kata", "kata")):
        api.create(
            "/apis/node.k8s.io/v1/runtimeclasses",
            {
                "apiVersion": "node.k8s.io/v1",
                "kind": "RuntimeClass",
                "metadata": {"name": name},
                "handler": handler,
            },
        )
    api.create(
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": "inference-high"},
            "value": 100000,
        },
    )
    api.create(
        "/api/v1/namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": workloads.NAMESPACE, "labels": workloads.NAMESPACE_LABELS},
        },
    )
    api.create(
        f"/apis/networking.k8s.io/v1/namespaces/{workloads.NAMESPACE}/networkpolicies",
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        },
    )
    for obj in workloads.policy_objects():
        api.create(policy_path(obj), obj)


def api_pod(size: str) -> bytes:
    """The bench pod as a client sends it to the API server (it writes managedFields itself)."""
    pod = workloads.pod_object(size)
    pod["metadata"].pop("managedFields", None)
    pod["metadata"].pop("generateName", None)
    pod["metadata"].pop("ownerReferences", None)  # no ReplicaSet to own it
    return json.dumps(pod, separators=(",", ":")).encode()


def dry_run_create(api: Api, body: bytes) -> tuple[int, dict[str, Any]]:
    return api.request(
        "POST", f"/api/v1/namespaces/{workloads.NAMESPACE}/pods?dryRun=All", raw=body
    )


# -- webhook switching --------------------------------------------------------------------------

NOOP_CONFIGURATION = "bench-noop"
NOOP_WARNING = "bench no-op webhook"
ARMS = ("modelward", "no-op webhooks", "none")


def noop_configurations(
    operator: Any, server: ServerProcess, ca_pem: bytes
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same two webhooks as modelward's (rules, selector, timeouts), served by the no-op."""
    from modelward.api.webhooks import webhook_configurations

    bundle = base64.b64encode(ca_pem).decode()
    url = f"https://127.0.0.1:{server.port}"
    return webhook_configurations(
        name=NOOP_CONFIGURATION,
        client_config_for={
            "validate": {"url": f"{url}/validate", "caBundle": bundle},
            "mutate": {"url": f"{url}/mutate", "caBundle": bundle},
        },
        excluded_namespaces=(operator.namespace,),
    )


def arm_in_use(api: Api, operator: Any, small: bytes) -> str:
    """Which arm the API server is applying right now, from what a dry-run create shows."""
    status, pod = dry_run_create(api, small)
    warnings = api.last_warnings()
    probe = operator.probe().status
    if status != 201:
        return f"failing (HTTP {status})"
    mutated = pod.get("spec", {}).get("runtimeClassName") == "gvisor"
    noop = any(NOOP_WARNING in w for w in warnings)
    if 400 <= probe < 500 and mutated and not noop:
        return "modelward"
    if probe == 201 and noop and not mutated:
        return "no-op webhooks"
    if probe == 201 and not noop and not mutated:
        return "none"
    return "switching"


def switch_to(
    api: Api, arm: str, operator: Any, configurations: dict[str, tuple[Any, Any]], small: bytes
) -> None:
    """Register the arm's two webhook configurations, delete the others', wait until applied."""
    for other, (validating, mutating) in configurations.items():
        name = validating["metadata"]["name"]
        for resource, body in (
            ("mutatingwebhookconfigurations", mutating),
            ("validatingwebhookconfigurations", validating),
        ):
            if other == arm:
                api.create(f"{WEBHOOK_API}/{resource}", body)
            else:
                api.request("DELETE", f"{WEBHOOK_API}/{resource}/{name}")
    wait_until(
        f"the API server to apply the webhooks of arm {arm!r}",
        lambda: arm_in_use(api, operator, small) == arm,
    )


# -- phase 4 ------------------------------------------------------------------------------------


def time_creates(api: Api, body: bytes, count: int, warmup: int) -> list[int]:
    for _ in range(warmup):
        dry_run_create(api, body)
    samples = []
    clock = time.perf_counter_ns
    for _ in range(count):
        started = clock()
        status, answer = dry_run_create(api, body)
        samples.append(clock() - started)
        if status != 201:
            raise RuntimeError(f"dry-run create: HTTP {status}: {answer.get('message', answer)}")
    return samples


def through_apiserver(
    api: Api,
    operator: Any,
    operator_pid: int,
    noop: ServerProcess,
    noop_ca: bytes,
    *,
    count: int,
    warmup: int,
    blocks: int = 2,
) -> list[dict[str, Any]]:
    """Blocks in alternating order (modelward, no-op, none), (none, no-op, modelward), ...;
    ``count`` creates per pod and arm in all."""
    bodies = {size: api_pod(size) for size in workloads.PODS}
    configurations = {
        "modelward": operator.webhook_configurations(),
        "no-op webhooks": noop_configurations(operator, noop, noop_ca),
        "none": None,
    }
    registrable = {k: v for k, v in configurations.items() if v is not None}
    samples: dict[tuple[str, str], list[int]] = {}
    webhook_cpu = {"modelward": 0.0, "no-op webhooks": 0.0}
    webhook_pid = {"modelward": operator_pid, "no-op webhooks": noop.pid}
    for block in range(blocks):
        for arm in ARMS if block % 2 == 0 else tuple(reversed(ARMS)):
            switch_to(api, arm, operator, registrable, bodies["small"])
            for size, body in bodies.items():
                pid = webhook_pid.get(arm)
                cpu = cpu_seconds(pid) if pid else 0.0
                times = time_creates(api, body, count // blocks, warmup)
                if pid:
                    webhook_cpu[arm] += cpu_seconds(pid) - cpu
                samples.setdefault((arm, size), []).extend(times)
    switch_to(api, "modelward", operator, registrable, bodies["small"])  # as it started
    rows = []
    for size in workloads.PODS:
        summary = {arm: summarize_ns(samples[(arm, size)]) for arm in ARMS}
        for arm in ARMS:
            rows.append(
                {"arm": arm, "pod": size, "request_bytes": len(bodies[size]), **summary[arm]}
            )
        for arm, base in (
            ("modelward", "none"),
            ("no-op webhooks", "none"),
            ("modelward", "no-op webhooks"),
        ):
            rows.append(
                {
                    "arm": f"{arm} minus {base}",
                    "pod": size,
                    **{
                        key: round(summary[arm][key] - summary[base][key], 1)
                        for key in ("p50_us", "p99_us", "mean_us")
                    },
                }
            )
    for arm, spent in webhook_cpu.items():
        creates = sum(len(v) for (a, _), v in samples.items() if a == arm)
        rows.append(
            {
                "arm": f"{arm}: webhook process CPU per create (mutate + validate)",
                "pod": "both",
                "cpu_us": round(spent / max(creates, 1) * 1e6, 1),
            }
        )
    return rows


# -- phase 5 ------------------------------------------------------------------------------------


def operator_pid(operator: Any) -> int:
    """The pid of ``modelward run`` serving ``operator``'s webhook port (found in /proc)."""
    flag = f"--webhook-port={operator.webhook_port}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if flag in argv and b"run" in argv:
            return int(entry.name)
    raise RuntimeError(f"no process serves {operator.webhook_url}")


def wait_idle(
    pid: int, *, quiet_cpu: float = 0.03, window: float = 2.0, timeout: float = 180.0
) -> float:
    """Wait until the process used < ``quiet_cpu`` of a core over ``window`` seconds, twice."""
    started = time.monotonic()
    quiet = 0
    while quiet < 2:
        cpu = cpu_seconds(pid)
        time.sleep(window)
        quiet = quiet + 1 if (cpu_seconds(pid) - cpu) / window < quiet_cpu else 0
        if time.monotonic() - started > timeout:
            break
    return time.monotonic() - started


class RssSampler:
    """RSS of a process every ``interval`` seconds, in a thread."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((round(time.monotonic() - self._started, 2), rss_bytes(self.pid)))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def memory_over_reviews(
    operator: Any, pid: int, *, reviews: int, warmup: int, folder: Path
) -> dict[str, Any]:
    bodies = write_bodies(folder)
    requests = [
        {
            "path": path,
            "body": str(bodies[size]),
            "expect_allowed": True,
            "expect_patch": path == "/mutate",
        }
        for size in ("small", "large")
        for path in ("/validate", "/mutate")
    ]
    job = {
        "host": "127.0.0.1",
        "port": operator.webhook_port,
        "ca": str(operator.ca_path),
        "concurrency": 16,
        "requests": requests,
        "max_seconds": 600.0,
    }
    idle = rss_bytes(pid)
    run_client({**job, "warmup": 0, "count": warmup})
    warm = rss_bytes(pid)
    cpu = cpu_seconds(pid)
    with RssSampler(pid, interval=1.0) as sampler:
        result = run_client({**job, "warmup": 0, "count": reviews})
    after = rss_bytes(pid)
    spent = cpu_seconds(pid) - cpu
    peak = max([after, *(rss for _, rss in sampler.samples)])
    return {
        "reviews": result["sent"],
        "warmup_reviews": warmup,
        "mix": "small/large x validate/mutate, round-robin, c=16, not dry-run",
        "rss_idle_mib": round(idle / MIB, 1),
        "rss_after_warmup_mib": round(warm / MIB, 1),
        "rss_after_mib": round(after / MIB, 1),
        "rss_peak_mib": round(peak / MIB, 1),
        "growth_after_warmup_pct": round((after - warm) / warm * 100, 2),
        "reviews_per_second": result["per_second"],
        "p50_us": result["p50_us"],
        "p99_us": result["p99_us"],
        "operator_cpu_us_per_review": round(spent / max(result["sent"], 1) * 1e6, 1),
        "rss_series_mib": [(t, round(r / MIB, 1)) for t, r in sampler.samples],
    }


def _parallel(api: Api, jobs: Iterable[tuple[str, dict[str, Any]]], threads: int = 8) -> float:
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(api.create, path, body) for path, body in jobs]:
            future.result()
    return time.monotonic() - started


def fill_cluster(api: Api, *, namespaces: int, policies: int) -> dict[str, Any]:
    """``policies`` policies in all (the four bench ones and fillers), and ``namespaces``
    namespaces each holding one headless Service and one Pod."""
    pod_template = json.loads(api_pod("small"))
    pod_template["metadata"].pop("namespace")
    fillers = max(policies - len(workloads.policy_objects()), 0)
    timings = {
        "policies_seconds": _parallel(
            api, ((policy_path(p), p) for p in map(workloads.filler_policy_object, range(fillers)))
        ),
        "namespaces_seconds": _parallel(
            api,
            (
                (
                    "/api/v1/namespaces",
                    {
                        "apiVersion": "v1",
                        "kind": "Namespace",
                        "metadata": {
                            "name": f"fill-{i:05d}",
                            "labels": {"team": f"team-{i % 50}", "tier": "fill"},
                        },
                    },
                )
                for i in range(namespaces)
            ),
        ),
        "services_seconds": _parallel(
            api,
            (
                (
                    f"/api/v1/namespaces/fill-{i:05d}/services",
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "metadata": {"name": "model"},
                        "spec": {
                            "clusterIP": "None",
                            "selector": {"app": f"model-{i}"},
                            "ports": [{"port": 8443, "name": "https"}],
                        },
                    },
                )
                for i in range(namespaces)
            ),
        ),
    }

    def pod(i: int) -> tuple[str, dict[str, Any]]:
        body = copy.deepcopy(pod_template)
        body["metadata"]["name"] = f"model-{i:05d}"
        body["metadata"]["labels"] = {"app": f"model-{i}"}
        return f"/api/v1/namespaces/fill-{i:05d}/pods", body

    timings["pods_seconds"] = _parallel(api, (pod(i) for i in range(namespaces)))
    return {
        "policies": fillers + len(workloads.policy_objects()),
        "namespaces": namespaces,
        "services": namespaces,
        "pods": namespaces,
        **{k: round(v, 1) for k, v in timings.items()},
    }


# -- the whole phase ----------------------------------------------------------------------------


def run(
    *,
    creates: int,
    create_warmup: int,
    reviews: int,
    review_warmup: int,
    fill_namespaces: int,
    fill_policies: int,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    from modelward_dev.binaries import find_binaries
    from modelward_dev.controlplane import LocalControlPlane
    from modelward_dev.operator_process import OperatorProcess

    results: dict[str, Any] = {}
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="modelward-bench-cluster-") as tmp,
        LocalControlPlane(binaries=find_binaries()) as plane,
    ):
        api = Api(plane)
        _, version = api.request("GET", "/version")
        results["versions"] = {
            "kube_apiserver": version.get("gitVersion"),
            "etcd": _etcd_version(plane),
        }
        install_crds(api)
        install_bench_objects(api)
        log(f"  control plane up in {time.monotonic() - started:.0f}s")
        operator = OperatorProcess(control_plane=plane)
        operator.start()
        try:
            small = api_pod("small")
            wait_until(
                "the operator to load the bench policies",
                lambda: arm_in_use(api, operator, small) == "modelward",
            )
            pid = operator_pid(operator)
            wait_idle(pid)
            results["operator_rss_after_start_mib"] = round(rss_bytes(pid) / MIB, 1)

            log(f"  phase 4: {creates} dry-run creates per pod and arm, through the API server")
            with serving_certificate() as (ca, cert, key):
                noop = start_server("noop", cert, key, Path(tmp, "noop.log"), warning=NOOP_WARNING)
                try:
                    results["apiserver"] = through_apiserver(
                        api,
                        operator,
                        pid,
                        noop,
                        ca.read_bytes(),
                        count=creates,
                        warmup=create_warmup,
                    )
                finally:
                    noop.stop()
            log(f"  phase 5: {reviews} reviews to the operator, watching its RSS")
            results["memory_reviews"] = memory_over_reviews(
                operator, pid, reviews=reviews, warmup=review_warmup, folder=Path(tmp)
            )
            log(
                f"  phase 5: {fill_policies} policies, {fill_namespaces} namespaces, "
                "services and pods in the cluster"
            )
            before = rss_bytes(pid)
            fill = fill_cluster(api, namespaces=fill_namespaces, policies=fill_policies)
            settle = wait_idle(pid)
            watched = rss_bytes(pid)
        finally:
            operator.stop()
        log("  phase 5: a fresh operator listing the filled cluster")
        fresh = OperatorProcess(control_plane=plane)
        started_fresh = time.monotonic()
        fresh.start()
        try:
            ready_seconds = time.monotonic() - started_fresh
            fresh_pid = operator_pid(fresh)
            wait_idle(fresh_pid)
            listed = rss_bytes(fresh_pid)
            with_cache_probe = fresh.probe().status
        finally:
            fresh.stop()
        results["memory_caches"] = {
            **fill,
            "rss_before_fill_mib": round(before / MIB, 1),
            "rss_after_fill_watched_mib": round(watched / MIB, 1),
            "settle_seconds": round(settle, 1),
            "rss_fresh_operator_listed_mib": round(listed / MIB, 1),
            "fresh_operator_ready_seconds": round(ready_seconds, 1),
            "fresh_operator_probe_status": with_cache_probe,
        }
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


def _etcd_version(plane: Any) -> str:
    try:
        out = subprocess.run(
            [str(plane.binaries.etcd), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except OSError:
        return "unknown"
    first = out.splitlines()[0] if out else "unknown"
    return first.split(":", 1)[-1].strip()
