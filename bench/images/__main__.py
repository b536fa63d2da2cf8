"""Registry look-up benchmarks (docs/performance.md, "Registry look-ups"): `make bench-images`.

1. Admission with every image rule and a warm cache vs the same policies without look-ups:
   p50 wall time and CPU per review, and their ratio (AdmissionService + ReviewImageLookups,
   in-process: the HTTPS path is the same for both and is measured by bench.admission).
2. Cold look-up cost per image (manifest + config + referrers list) against the local
   registry with TLS and basic auth; the same with oras-py (in its own venv) for comparison.
3. Layer listing cost per GiB (a generated layer streamed, decompressed and listed).
4. Registry down (closed port), slow (stalls past the deadline) and garbage: time to answer.

Results go to bench/results/images.json and are printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from modelward.admission.images import ReviewImageLookups
from modelward.admission.review import parse_review
from modelward.admission.service import AdmissionService
from modelward.engine.policy import PACKAGE_MANAGER_NAMES, SHELL_NAMES, ForbiddenContents
from modelward.registry.auth import Credentials, CredentialStore
from modelward.registry.client import RegistryClient, RegistrySettings, Repository
from modelward.registry.lookups import ImageInspector, ImageRequest, LookupSettings
from modelward.state import ClusterState
from modelward_dev.images import ImageConfig, Layer, build_image
from modelward_dev.registry import Credentials as PushCredentials
from modelward_dev.registry import LocalRegistry

ROOT = Path(__file__).resolve().parents[2]
USER = PushCredentials("bench", "bench-s3cret")
ORAS_VENV = Path("/tmp/bench-oras-venv")
CONTENTS = ForbiddenContents(SHELL_NAMES + PACKAGE_MANAGER_NAMES, ())

EVERY_RULE = {
    "requireDigest": True,
    "requireNonRootUser": True,
    "maxSizeMiB": 500,
    "maxLayers": 20,
    "allowedBaseImages": ["gcr.io/distroless/*"],
    "forbiddenContents": {"shells": True, "packageManagers": True},
    "maxAgeDays": 30,
}


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p90_ms": ordered[int(len(ordered) * 0.9)] * 1000,
        "n": len(ordered),
    }


def _policy(images: dict[str, Any], mode: str = "Enforce") -> dict[str, Any]:
    return {
        "apiVersion": "modelward.io/v1alpha1",
        "kind": "ClusterModelPolicy",
        "metadata": {"name": "bench", "uid": "u", "generation": 1, "resourceVersion": "1"},
        "spec": {"mode": mode, "match": {"namespaces": ["serving"]}, "images": images},
    }


def _review(image: str) -> bytes:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "serving"},
        "spec": {"containers": [{"name": "server", "image": image}]},
    }
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "serving",
                "operation": "CREATE",
                "object": pod,
                "userInfo": {"username": "bench"},
            },
        }
    ).encode()


def _state(images: dict[str, Any]) -> ClusterState:
    from modelward.engine import parse_policy

    state = ClusterState()
    state.put_policy(
        ("ClusterModelPolicy", None, "bench"),
        policy=parse_policy(_policy(images)),
        error=None,
        generation=1,
        resource_version="1",
    )
    return state


async def _per_review(judge: Callable[[], Awaitable[Any]], count: int) -> dict[str, float]:
    for _ in range(20):
        await judge()
    walls, cpus = [], []
    for _ in range(count):
        wall, cpu = time.perf_counter(), time.process_time()
        await judge()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    result = _stats(walls)
    result["cpu_ms"] = statistics.mean(cpus) * 1000
    return result


async def warm_admission(registry: LocalRegistry, reference: str, count: int) -> dict[str, Any]:
    request = parse_review(_review(reference))
    credentials = CredentialStore(({registry.host: Credentials(USER.username, USER.password)},))
    # Without look-ups: the same reference rules (digest, registries, tags) only.
    plain_state = _state({"requireDigest": True, "allowedRegistries": [registry.host]})
    plain = AdmissionService(state=plain_state)

    async def without() -> Any:
        return plain.validate(request)

    state = _state({**EVERY_RULE, "allowedRegistries": [registry.host]})
    service = AdmissionService(state=state)
    client = RegistryClient(settings=RegistrySettings(ca_bundles=(str(registry.ca_path),)))
    lookups = ReviewImageLookups(
        inspector=ImageInspector(client=client, settings=LookupSettings(deadline=30)),
        state=state,
        operator_credentials=credentials,
    )

    async def with_lookups() -> Any:
        images = await lookups.for_review(request)
        return service.validate(request, images=images)

    http = await _http_admission(
        {"requireDigest": True, "allowedRegistries": [registry.host]},
        {**EVERY_RULE, "allowedRegistries": [registry.host]},
        lookups,
        _review(reference),
        count,
    )
    outcome = await with_lookups()
    assert outcome.decision is not None, "the look-up policy did not judge the pod"
    assert "MW-IMG-010" not in {f.violation.rule_id for f in outcome.decision.findings}
    base = await _per_review(without, count)
    looked = await _per_review(with_lookups, count)
    await client.close()
    return {
        "http": http,
        "without_lookups": base,
        "with_lookups_warm": looked,
        "p50_ratio": looked["p50_ms"] / base["p50_ms"],
        "cpu_ratio": looked["cpu_ms"] / base["cpu_ms"],
    }


async def _http_admission(
    plain_images: dict[str, Any],
    lookup_images: dict[str, Any],
    lookups: ReviewImageLookups,
    body: bytes,
    count: int,
) -> dict[str, Any]:
    """The same review POSTed to /validate of two admission apps over HTTP (keep-alive):
    what a review costs end to end, with and without look-ups (client in the same process)."""
    import aiohttp
    from aiohttp import web

    from modelward.admission.server import make_admission_app
    from modelward.observability.metrics import Metrics

    results: dict[str, Any] = {}
    posts: dict[str, Callable[[], Awaitable[Any]]] = {}
    runners = []
    session = aiohttp.ClientSession()
    for name, images, with_lookups in (
        ("without_lookups", plain_images, None),
        ("with_lookups_warm", lookup_images, lookups),
    ):
        state = _state(images)
        if with_lookups is not None:
            with_lookups.state = state
        app = make_admission_app(
            service=AdmissionService(state=state),
            metrics=Metrics.create(),
            deadline_seconds=2.5,
            lookups=with_lookups,
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/validate"

        async def post(url: str = url) -> Any:
            async with session.post(url, data=body) as response:
                return await response.read()

        answer = json.loads(await post())
        assert answer["response"]["allowed"], answer
        posts[name] = post
    # Interleaved, so that the machine's noise falls on both alike.
    samples: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in posts}
    for index in range(count + 20):
        for name, post in posts.items():
            wall, cpu = time.perf_counter(), time.process_time()
            await post()
            if index >= 20:
                samples[name][0].append(time.perf_counter() - wall)
                samples[name][1].append(time.process_time() - cpu)
    for name, (walls, cpus) in samples.items():
        results[name] = {**_stats(walls), "cpu_ms": statistics.mean(cpus) * 1000}
    await session.close()
    for runner in runners:
        await runner.cleanup()
    results["p50_ratio"] = (
        results["with_lookups_warm"]["p50_ms"] / results["without_lookups"]["p50_ms"]
    )
    results["cpu_ratio"] = (
        results["with_lookups_warm"]["cpu_ms"] / results["without_lookups"]["cpu_ms"]
    )
    return results


async def cold_lookups(
    registry: LocalRegistry, reference: str, digest: str, count: int
) -> dict[str, Any]:
    credentials = CredentialStore(({registry.host: Credentials(USER.username, USER.password)},))
    samples = []
    for _ in range(count):
        async with RegistryClient(
            settings=RegistrySettings(ca_bundles=(str(registry.ca_path),))
        ) as client:
            inspector = ImageInspector(client=client, settings=LookupSettings(deadline=30))
            started = time.perf_counter()
            facts = await inspector.facts(ImageRequest(reference), credentials=credentials)
            repo = Repository(registry.host, "bench/app", credentials.for_registry(registry.host))
            await client.referrers(repo, digest)
            samples.append(time.perf_counter() - started)
            assert facts.error is None, facts.error
    return _stats(samples)


def oras_lookups(registry: LocalRegistry, digest: str, count: int) -> dict[str, Any]:
    """oras-py (requests-based, synchronous) doing manifest + config, in its own venv."""
    if not (ORAS_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(ORAS_VENV)], check=True)
        subprocess.run([str(ORAS_VENV / "bin" / "pip"), "install", "-q", "oras"], check=True)
    script = f"""
import json, time, os
t0 = time.perf_counter()
import oras.client
import_s = time.perf_counter() - t0
os.environ["REQUESTS_CA_BUNDLE"] = {str(registry.ca_path)!r}
samples = []
for _ in range({count}):
    t = time.perf_counter()
    # The default "token" back-end takes the Basic challenge's realm for a token URL and
    # fails; the basic back-end answers it.
    c = oras.client.OrasClient(hostname={registry.host!r}, tls_verify=True, auth_backend="basic")
    c.login(username={USER.username!r}, password={USER.password!r}, hostname={registry.host!r})
    m = c.get_manifest({registry.host + "/bench/app:v1"!r})
    r = c.get_blob({registry.host + "/bench/app"!r}, m["config"]["digest"])
    r.raise_for_status()
    samples.append(time.perf_counter() - t)
print(json.dumps({{"import_s": import_s, "samples": samples}}))
"""
    with tempfile.TemporaryDirectory() as home:
        # oras' login writes the credentials into $DOCKER_CONFIG/config.json: keep it private.
        done = subprocess.run(
            [str(ORAS_VENV / "bin" / "python"), "-c", script],
            capture_output=True,
            text=True,
            env={**os.environ, "DOCKER_CONFIG": home, "HOME": home},
        )
    if done.returncode != 0:
        return {"error": done.stderr[-800:]}
    data = json.loads(done.stdout.strip().splitlines()[-1])
    size = subprocess.run(
        ["du", "-sk", str(next((ORAS_VENV / "lib").glob("python3*/site-packages")))],
        capture_output=True,
        text=True,
    ).stdout.split()[0]
    result = _stats(data["samples"])
    result["import_ms"] = data["import_s"] * 1000
    result["site_packages_mib"] = int(size) / 1024
    return result


def _listing_layer(mib: int) -> bytes:
    """A realistic-ish layer: many files of random data (mostly incompressible, like models
    and binaries), gzip level 1, about ``mib`` MiB compressed."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=1) as gz,
        tarfile.open(fileobj=gz, mode="w") as archive,
    ):
        for i in range(mib * 16):  # 64 KiB files
            data = os.urandom(64 << 10)
            info = tarfile.TarInfo(f"usr/lib/data/f{i:06d}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name in ("bin/sh", "usr/bin/apt"):
            info = tarfile.TarInfo(name)
            archive.addfile(info, io.BytesIO(b""))
    return buffer.getvalue()


async def layer_listing(registry: LocalRegistry, mib: int) -> dict[str, Any]:
    layer_bytes = _listing_layer(mib)
    import hashlib

    digest = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    pusher = registry.client(USER)
    pusher.push_blob("bench/listing", layer_bytes)
    credentials = CredentialStore(({registry.host: Credentials(USER.username, USER.password)},))
    async with RegistryClient(
        settings=RegistrySettings(ca_bundles=(str(registry.ca_path),))
    ) as client:
        inspector = ImageInspector(client=client, settings=LookupSettings(deadline=600))
        repo = Repository(registry.host, "bench/listing", credentials.for_registry(registry.host))
        cpu, wall = time.process_time(), time.perf_counter()
        listing = await inspector._listing(
            repo, digest, "application/vnd.oci.image.layer.v1.tar+gzip", CONTENTS, frozenset()
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert listing.matches == {"bin/sh", "usr/bin/apt"}, listing
    gib = len(layer_bytes) / (1 << 30)
    return {
        "compressed_mib": len(layer_bytes) / (1 << 20),
        "entries": listing.entries,
        "seconds": wall,
        "seconds_per_gib": wall / gib,
        "cpu_seconds_per_gib": cpu / gib,
    }


class _Bad(BaseHTTPRequestHandler):
    mode = "stall"

    def do_GET(self) -> None:
        if self.mode == "stall":
            time.sleep(10)
        body = b"<html>garbage</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *_: Any) -> None:
        pass

    def handle(self) -> None:
        # The client may give up first (its deadline): that is the point, not an error.
        with contextlib.suppress(ConnectionError):
            super().handle()


def _server(mode: str) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Bad,), {"mode": mode}))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"


async def failures(deadline: float) -> dict[str, Any]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    stall, stall_host = _server("stall")
    garbage, garbage_host = _server("garbage")
    results = {}
    try:
        for name, host in (("down", dead), ("slow", stall_host), ("garbage", garbage_host)):
            async with RegistryClient() as client:
                inspector = ImageInspector(
                    client=client, settings=LookupSettings(deadline=deadline)
                )
                started = time.perf_counter()
                looked = await inspector.lookups(
                    [ImageRequest(f"{host}/app:v1", None, frozenset({host}))],
                    credentials=CredentialStore(),
                )
                elapsed = time.perf_counter() - started
                facts = looked.get(f"{host}/app:v1")
                assert facts is not None and facts.error is not None
                results[name] = {"ms": elapsed * 1000, "error": facts.error[:160]}
    finally:
        stall.shutdown()
        garbage.shutdown()
    return results


async def main_async(quick: bool) -> dict[str, Any]:
    count = 50 if quick else 300
    with LocalRegistry(tls=True, users=(USER,)) as registry:
        top = Layer()
        top.add_file("/app/server", os.urandom(1 << 20), mode=0o755)
        image = build_image(
            "bench",
            [top],
            ImageConfig(user="65532"),
            created=int(time.time()),
            annotations={"org.opencontainers.image.base.name": "gcr.io/distroless/static"},
        )
        digest = image.push(registry.client(USER), "bench/app", "v1")
        pinned = f"{registry.host}/bench/app:v1@{digest}"
        results: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "warm_admission": await warm_admission(registry, pinned, count),
            "cold_lookup": await cold_lookups(
                registry, f"{registry.host}/bench/app:v1", digest, 10 if quick else 30
            ),
            "oras_py_cold_lookup": oras_lookups(registry, digest, 10 if quick else 30),
            "layer_listing": await layer_listing(registry, 32 if quick else 128),
        }
    results["failures"] = await failures(1.5)
    return results


def main() -> None:
    quick = "--quick" in sys.argv
    results = asyncio.run(main_async(quick))
    out = ROOT / "bench" / "results" / "images.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
