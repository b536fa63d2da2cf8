"""A local OCI distribution registry (Debian's ``docker-registry``) on 127.0.0.1, and its push API.

There is no Docker engine and no Docker Hub here: the test node pulls every image (pause,
busybox, modelward) from this registry, and the images are pushed with the registry's plain
HTTP API (``POST`` an upload, ``PUT`` the blob, ``PUT`` the manifest), which is what
``docker push`` does too. The registry listens on loopback only, keeps its storage in a
temporary folder and is stopped with the harness.

Options for the tests that need them: TLS (a serving certificate with IP SAN 127.0.0.1 from a
CA the registry's clients must trust) and htpasswd basic authentication (bcrypt, the only hash
the registry accepts).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from modelward.certs import create_ca, issue_certificate
from modelward_dev.controlplane import (
    ManagedProcess,
    free_ports,
    loopback_opener,
    register_cleanup,
    unregister_cleanup,
)
from modelward_dev.lifecycle import StartStop

with warnings.catch_warnings():
    # Deprecated since 3.11, gone in 3.13: the only bcrypt available without a new dependency.
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

__all__ = [
    "DOCKER_REGISTRY",
    "Credentials",
    "LocalRegistry",
    "RegistryClient",
    "RegistryError",
    "htpasswd_line",
]

DOCKER_REGISTRY = Path("/usr/bin/docker-registry")
_INSTALL_HINT = "Install it with hack/install-system-deps.sh (Debian package docker-registry)."


class RegistryError(RuntimeError):
    """The registry did not start, or refused a push; the message says what it answered."""


@dataclass(frozen=True)
class Credentials:
    """A user of the registry's htpasswd file."""

    username: str
    password: str

    def header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"


def htpasswd_line(credentials: Credentials) -> str:
    """One htpasswd line with a bcrypt hash: the only kind the distribution registry accepts.

    glibc's crypt (libxcrypt on Debian 12) makes ``$2b$`` hashes, so no bcrypt package and no
    apache2-utils are needed.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        hashed = crypt.crypt(
            credentials.password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 5)
        )
    if not hashed or not hashed.startswith("$2"):
        raise RegistryError(
            "this system's crypt() cannot make bcrypt hashes, which the registry's htpasswd "
            "authentication requires; use a glibc with libxcrypt (Debian 12 has it)."
        )
    return f"{credentials.username}:{hashed}"


class RegistryClient:
    """Pushes blobs and manifests to a registry with its HTTP API; reads them back.

    Works against any distribution-compatible registry (the local one, or one a user names
    with ``make image PUSH=host:port/repo:tag``), with optional basic auth and a CA to trust.
    """

    def __init__(
        self,
        base_url: str,
        *,
        credentials: Credentials | None = None,
        ca_path: Path | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = credentials
        self._timeout = timeout
        context = None
        if self.base_url.startswith("https://"):
            context = ssl.create_default_context(cafile=str(ca_path) if ca_path else None)
        parsed = urllib.parse.urlsplit(self.base_url)
        loopback = parsed.hostname in ("127.0.0.1", "localhost", "::1")
        self._opener = (
            loopback_opener(context)
            if loopback
            else urllib.request.build_opener(
                *([urllib.request.HTTPSHandler(context=context)] if context else [])
            )
        )

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request; any HTTP status is returned (status, headers, body), never raised."""
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        all_headers = dict(headers or {})
        if self._credentials is not None:
            all_headers["Authorization"] = self._credentials.header()
        request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return response.status, dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers.items()), error.read()

    def has_blob(self, repository: str, digest: str) -> bool:
        status, _, _ = self.request("HEAD", f"/v2/{repository}/blobs/{digest}")
        return status == 200

    def push_blob(self, repository: str, data: bytes) -> str:
        """Upload ``data`` (monolithic upload) unless present; returns its ``sha256:`` digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.has_blob(repository, digest):
            return digest
        status, headers, body = self.request("POST", f"/v2/{repository}/blobs/uploads/")
        if status != 202:
            raise RegistryError(self._refused("start an upload to", repository, status, body))
        location = _header(headers, "Location")
        if not location:
            raise RegistryError(f"{self.base_url} gave no upload location for {repository}")
        if "://" not in location:
            location = self.base_url + location
        separator = "&" if "?" in location else "?"
        status, _, body = self.request(
            "PUT",
            f"{location}{separator}digest={urllib.parse.quote(digest)}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if status != 201:
            raise RegistryError(self._refused("upload a blob to", repository, status, body))
        return digest

    def push_manifest(
        self, repository: str, reference: str, manifest: bytes, media_type: str
    ) -> str:
        """PUT a manifest under a tag (or digest); returns the manifest's digest."""
        status, headers, body = self.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            data=manifest,
            headers={"Content-Type": media_type},
        )
        if status != 201:
            raise RegistryError(self._refused("store a manifest in", repository, status, body))
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        returned = _header(headers, "Docker-Content-Digest")
        if returned and returned != digest:
            raise RegistryError(f"{self.base_url} stored the manifest as {returned}, not {digest}")
        return digest

    def manifest(self, repository: str, reference: str, media_type: str) -> tuple[int, bytes]:
        status, _, body = self.request(
            "GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": media_type}
        )
        return status, body

    def _refused(self, action: str, repository: str, status: int, body: bytes) -> str:
        text = body.decode("utf-8", "replace").strip()[:500]
        hint = ""
        if status == 401:
            hint = " The registry wants credentials: pass a username and password."
        return f"{self.base_url} refused to {action} {repository}: HTTP {status} {text}.{hint}"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


class LocalRegistry(StartStop):
    """``docker-registry serve`` on 127.0.0.1:<free port> with storage in a temporary folder.

    Attributes valid after ``start()``: ``host`` (``127.0.0.1:PORT``, the image-name prefix),
    ``url``, ``port``, ``work_dir``, ``log_path``, ``ca_path`` (TLS only), ``client``.
    """

    def __init__(
        self,
        *,
        tls: bool = False,
        users: tuple[Credentials, ...] = (),
        program: Path = DOCKER_REGISTRY,
        work_dir: Path | None = None,
        keep_work_dir: bool = False,
        startup_timeout: float = 30.0,
    ) -> None:
        """Describe the registry; nothing starts before ``start()``.

        Args:
            tls: serve HTTPS with a certificate for IP 127.0.0.1 signed by a new CA (``ca_path``).
            users: htpasswd users; without any, the registry needs no authentication.
            program: the registry binary.
            work_dir: folder for config, storage and log; a temporary one if None (a given folder
                is never deleted).
            keep_work_dir: keep the temporary folder after ``stop()``, to debug.
            startup_timeout: seconds allowed for ``GET /v2/`` to answer.
        """
        self._tls = tls
        self._users = users
        self._program = program
        self._given_work_dir = work_dir
        self._keep_work_dir = keep_work_dir or work_dir is not None
        self._startup_timeout = startup_timeout
        self._work_dir: Path | None = None
        self._port: int | None = None
        self._process: ManagedProcess | None = None
        self._lock = threading.RLock()

    def start(self) -> None:
        """Write the config, start the registry, wait until ``/v2/`` answers.

        Raises:
            RegistryError: the program is missing, exited, or did not answer in time.
        """
        with self._lock:
            if self._process is not None:
                raise RuntimeError("this registry was already started")
            if not self._program.is_file():
                raise RegistryError(
                    f"the registry program {self._program} is missing. {_INSTALL_HINT}"
                )
            if self._given_work_dir is not None:
                self._work_dir = self._given_work_dir.resolve()
                self._work_dir.mkdir(parents=True, exist_ok=True)
            else:
                self._work_dir = Path(tempfile.mkdtemp(prefix="modelward-registry-"))
            register_cleanup(self.stop)
            try:
                (self._port,) = free_ports(1)
                config = self._write_config(self._port)
                self._process = ManagedProcess(
                    name="docker-registry",
                    args=[str(self._program), "serve", str(config)],
                    log_path=self.log_path,
                    cwd=self._work_dir,
                )
                self._process.start()
                self._wait_until_ready()
            except BaseException:
                self._keep_work_dir = True
                self.stop()
                raise

    def stop(self) -> None:
        """Stop the registry and delete its temporary folder. Idempotent."""
        with self._lock:
            unregister_cleanup(self.stop)
            if self._process is not None:
                self._process.stop(grace=5.0)
            if self._work_dir is not None and not self._keep_work_dir:
                shutil.rmtree(self._work_dir, ignore_errors=True)

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            raise RuntimeError("the registry has not been started")
        return self._work_dir

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the registry has not been started")
        return self._port

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``: the prefix of image names in this registry."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://{self.host}"

    @property
    def tls(self) -> bool:
        return self._tls

    @property
    def ca_path(self) -> Path:
        if not self._tls:
            raise RuntimeError("this registry serves plain HTTP: it has no CA")
        return self.work_dir / "pki" / "ca.crt"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "registry.log"

    def client(self, credentials: Credentials | None = None) -> RegistryClient:
        """A client for this registry (trusting its CA when it serves TLS)."""
        return RegistryClient(
            self.url, credentials=credentials, ca_path=self.ca_path if self._tls else None
        )

    def _write_config(self, port: int) -> Path:
        storage = self.work_dir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        http: dict[str, object] = {
            "addr": f"127.0.0.1:{port}",
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        }
        if self._tls:
            pki = self.work_dir / "pki"
            pki.mkdir(parents=True, exist_ok=True)
            ca = create_ca(common_name="modelward-local-registry-ca")
            serving = issue_certificate(
                ca, common_name="modelward-local-registry", ip_addresses=("127.0.0.1",)
            )
            (pki / "ca.crt").write_bytes(ca.cert_pem)
            (pki / "registry.crt").write_bytes(serving.cert_pem)
            (pki / "registry.key").write_bytes(serving.key_pem)
            (pki / "registry.key").chmod(0o600)
            http["tls"] = {
                "certificate": str(pki / "registry.crt"),
                "key": str(pki / "registry.key"),
            }
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(storage)},
                "delete": {"enabled": True},
            },
            "http": http,
        }
        if self._users:
            htpasswd = self.work_dir / "htpasswd"
            htpasswd.write_text("".join(htpasswd_line(u) + "\n" for u in self._users))
            config["auth"] = {"htpasswd": {"realm": "modelward-local", "path": str(htpasswd)}}
        path = self.work_dir / "config.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._startup_timeout
        client = self.client()
        last = "no answer yet"
        while True:
            if not self._process.running():
                raise RegistryError(
                    f"docker-registry exited during startup with code "
                    f"{self._process.returncode()}.\n{self._process.describe_failure()}"
                )
            try:
                status, _, _ = client.request("GET", "/v2/")
                # 401 is an answer too: the registry is up and wants credentials.
                if status in (200, 401):
                    return
                last = f"HTTP {status}"
            except (OSError, ssl.SSLError) as error:
                last = str(error)
            if time.monotonic() > deadline:
                raise RegistryError(
                    f"docker-registry did not answer GET /v2/ within {self._startup_timeout:.0f} s "
                    f"({last}).\n{self._process.describe_failure()}"
                )
            time.sleep(0.05)


def manifest_json(manifest: Mapping[str, object]) -> bytes:
    """Canonical bytes of a manifest or config: sorted keys, no spaces, so digests reproduce."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
