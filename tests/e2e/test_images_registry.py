"""Images judged by what they are, through the real kube-apiserver and a real registry.

The distribution registry runs with TLS and htpasswd; images are built in Python and pushed.
The operator reads the pod's own imagePullSecret (dockerconfigjson) to look them up, and
trusts the registry's CA through --registry-ca-bundle. A dead port, a server that stalls past
the deadline and one that answers garbage stand in for the registry outages.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from modelward_dev.controlplane import LocalControlPlane, ToolRunner
from modelward_dev.images import BuiltImage, ImageConfig, Layer, build_image
from modelward_dev.operator_process import HARNESS_SCOPE_LABEL, OperatorProcess
from modelward_dev.registry import Credentials, LocalRegistry
from tests.e2e.helpers import apply, apply_policy, cluster_policy, get_json, pod

pytestmark = pytest.mark.slow

CONFIGURATION = "modelward-images"
USER = Credentials("puller", "pull-" + secrets.token_hex(6))
SECRET = "registry-pull"


@pytest.fixture(scope="module")
def registry() -> Iterator[LocalRegistry]:
    with LocalRegistry(tls=True, users=(USER,)) as started:
        yield started


class _Misbehaving(BaseHTTPRequestHandler):
    mode = "stall"

    def do_GET(self) -> None:
        if self.mode == "stall":
            time.sleep(20)  # far past the look-up deadline
        body = b"\x00\x01 this is not a manifest"
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
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


def _serve(mode: str) -> Iterator[str]:
    handler = type(f"{mode}Handler", (_Misbehaving,), {"mode": mode})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def stalling() -> Iterator[str]:
    yield from _serve("stall")


@pytest.fixture(scope="module")
def garbage() -> Iterator[str]:
    yield from _serve("garbage")


@pytest.fixture(scope="module")
def dead() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"  # closed again: nothing listens there


@pytest.fixture(scope="module")
def images_operator(
    control_plane: LocalControlPlane, crds: list[Path], registry: LocalRegistry
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        control_plane=control_plane,
        namespace="modelward-images-system",
        configuration_name=CONFIGURATION,
        probe_namespace="modelward-images-probe",
        webhooks="chart",
        extra_args=(
            f"--registry-ca-bundle={registry.ca_path}",
            "--registry-pull-secrets",
            "--registry-lookup-deadline=1.5",
        ),
    )
    with process:
        yield process


@pytest.fixture
def scoped(control_plane: LocalControlPlane, images_operator: OperatorProcess) -> str:
    """A namespace judged by this module's operator only, holding the pull secret."""
    name = f"images-{secrets.token_hex(3)}"
    response = control_plane.api_request(
        "POST",
        "/api/v1/namespaces",
        body={"metadata": {"name": name, "labels": {HARNESS_SCOPE_LABEL: CONFIGURATION}}},
    )
    assert response.status == 201, response.message
    return name


def _pull_secret(kubectl: ToolRunner, namespace: str, registry: LocalRegistry) -> None:
    auth = base64.b64encode(f"{USER.username}:{USER.password}".encode()).decode()
    config = json.dumps({"auths": {registry.host: {"auth": auth}}})
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": SECRET, "namespace": namespace},
        "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()},
    }
    result = apply(kubectl, secret)
    assert result.returncode == 0, result.stderr


def _image(
    name: str,
    *,
    user: str = "65532:65532",
    shell: bool = False,
    big: bool = False,
    age_days: int = 1,
) -> BuiltImage:
    layer = Layer()
    layer.add_file("/app/server", b"\x7fELF" + name.encode(), mode=0o755)
    if shell:
        layer.add_file("/bin/sh", b"\x7fELF", mode=0o755)
    if big:
        layer.add_file("/app/weights", os.urandom(3 << 20))  # incompressible: 3 MiB
    return build_image(
        name, [layer], ImageConfig(user=user), created=int(time.time()) - age_days * 86400
    )


def _pod(name: str, namespace: str, image: str) -> dict[str, Any]:
    body = pod(name, namespace)
    body["spec"]["containers"][0]["image"] = image
    body["spec"]["imagePullSecrets"] = [{"name": SECRET}]
    return body


MINIMAL = {
    "requireDigest": False,
    "requireNonRootUser": True,
    "maxSizeMiB": 2,
    "forbiddenContents": {"shells": True, "packageManagers": True},
    "maxAgeDays": 30,
}


def test_images_are_denied_for_what_they_are_with_the_rule_the_image_and_the_fix(
    kubectl: ToolRunner, scoped: str, registry: LocalRegistry
) -> None:
    _pull_secret(kubectl, scoped, registry)
    apply_policy(kubectl, cluster_policy(f"{scoped}-min", scoped, {"images": MINIMAL}))
    pusher = registry.client(USER)
    cases = {
        "good": (_image("good"), None, None),
        "rooted": (_image("rooted", user="root"), "MW-IMG-004", "set a non-root numeric USER"),
        "shell": (_image("shell", shell=True), "MW-IMG-008", "contains /bin/sh"),
        "big": (_image("big", big=True), "MW-IMG-005", "over the 2 MiB allowed"),
        "old": (_image("old", age_days=90), "MW-IMG-009", "over the 30 days allowed"),
    }
    for name, (image, rule, words) in cases.items():
        image.push(pusher, f"serving/{name}", "v1")
        reference = f"{registry.host}/serving/{name}:v1"
        result = apply(kubectl, _pod(name, scoped, reference))
        if rule is None:
            assert result.returncode == 0, result.stderr
            continue
        assert result.returncode != 0, f"{name} was admitted"
        assert f"[{rule}]" in result.stderr and reference in result.stderr, result.stderr
        assert words in result.stderr and "Fix:" in result.stderr
        assert "MW-IMG-010" not in result.stderr  # judged, not failed


def test_patch_mode_pins_the_tag_to_its_digest(
    kubectl: ToolRunner, scoped: str, registry: LocalRegistry
) -> None:
    _pull_secret(kubectl, scoped, registry)
    apply_policy(
        kubectl,
        cluster_policy(f"{scoped}-pin", scoped, {"images": {"requireDigest": True}}, "Patch"),
    )
    digest = _image("pinned").push(registry.client(USER), "serving/pinned", "v2")
    reference = f"{registry.host}/serving/pinned:v2"
    result = apply(kubectl, _pod("pinned", scoped, reference))
    assert result.returncode == 0, result.stderr
    created = get_json(kubectl, "pod", "pinned", "-n", scoped)
    assert created["spec"]["containers"][0]["image"] == f"{reference}@{digest}"


@pytest.mark.parametrize("failure", ["dead", "stalling", "garbage"])
def test_registry_outages_are_judged_by_on_lookup_failure(
    kubectl: ToolRunner,
    scoped: str,
    failure: str,
    request: pytest.FixtureRequest,
) -> None:
    host = request.getfixturevalue(failure)
    words = {
        "dead": "cannot be reached",
        "stalling": "did not finish within 1.5 s",
        "garbage": "not JSON",
    }[failure]
    sections = {"images": {**MINIMAL, "insecureRegistries": [host]}}
    apply_policy(kubectl, cluster_policy(f"{scoped}-deny", scoped, sections))
    reference = f"{host}/serving/app:v1"
    started = time.monotonic()
    denied = apply(kubectl, _pod("deny", scoped, reference))
    elapsed = time.monotonic() - started
    assert denied.returncode != 0
    assert "[MW-IMG-010]" in denied.stderr and reference in denied.stderr, denied.stderr
    assert words in denied.stderr and "onLookupFailure: Warn" in denied.stderr
    assert elapsed < 5.0  # below the webhook timeout: an outage never hangs admission

    sections["images"]["onLookupFailure"] = "Warn"
    apply_policy(kubectl, cluster_policy(f"{scoped}-deny", scoped, sections))
    warned = apply(kubectl, _pod("warn", scoped, reference))
    assert warned.returncode == 0, warned.stderr
    assert "MW-IMG-010" in warned.stderr and words in warned.stderr  # a warning, shown
