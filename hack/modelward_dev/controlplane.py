"""A real, local Kubernetes control plane: etcd and kube-apiserver on loopback, no Docker.

This is what controller-runtime's envtest runs. Admission, RBAC, CRDs, server-side dry-run and
webhooks behave exactly as in a cluster; no controllers run, so Deployments create no Pods,
Pods stay Pending and namespaces never finish deleting.

Two ways to use it:

* Tests: ``with LocalControlPlane() as cp: ...`` (or ``start()``/``stop()``). Everything lives
  in a temporary folder and every process it started is killed when the block ends, when the
  interpreter exits, on SIGINT/SIGTERM/SIGHUP, and (on Linux) even if this Python process is
  SIGKILLed, because the children die with it.
* The demo: ``LocalControlPlane.reuse_or_start()`` keeps one control plane running across
  commands, described by a state file under ``~/.cache/modelward/demo-cluster/``; a later call
  reuses it while it still answers ``/readyz``. ``LocalControlPlane.stop_reusable()`` ends it.
  From a shell: ``python -m modelward_dev.controlplane up|status|down``.

Every certificate comes from ``modelward.certs``, the module the operator itself uses.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import ctypes
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, Self

import yaml
from cryptography.hazmat.primitives import serialization

from modelward.certs import KeyPair, create_ca, issue_certificate
from modelward_dev.binaries import ControlPlaneBinaries, cache_dir, find_binaries
from modelward_dev.lifecycle import StartStop

__all__ = [
    "DEFAULT_STARTUP_TIMEOUT",
    "ApiResponse",
    "CommandError",
    "ControlPlaneError",
    "LocalControlPlane",
    "ManagedProcess",
    "ToolRunner",
    "default_state_dir",
    "free_ports",
    "loopback_opener",
    "main",
    "register_cleanup",
    "unregister_cleanup",
]

#: Seconds allowed for etcd + kube-apiserver to become ready (a cold start takes far less, but
#: CI machines with 2 busy cores can be slow).
DEFAULT_STARTUP_TIMEOUT = 120.0
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
CONTEXT_NAME = "modelward-local"
_STATE_FORMAT = 1
_PORT_RETRIES = 3


def run_tool(
    binary: Path,
    args: Sequence[str],
    *,
    kubeconfig: Path,
    input: str | None = None,
    timeout: float = 60.0,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run kubectl or helm with ``kubeconfig`` (text output captured).

    Raises:
        CommandError: ``check`` is true and the tool failed (the message quotes stderr).
        subprocess.TimeoutExpired: it ran longer than ``timeout`` seconds.
    """
    command = [str(binary), f"--kubeconfig={kubeconfig}", *args]
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    result = subprocess.run(
        command, input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if check and result.returncode != 0:
        raise CommandError(result.returncode, command, result.stdout, result.stderr)
    return result


class ControlPlaneError(RuntimeError):
    """The control plane could not be started or reached; the message carries the log tail."""


class ToolRunner(Protocol):
    """The shape of ``LocalControlPlane.kubectl`` / ``.helm`` (and of the ``kubectl`` fixture)."""

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = ...,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]: ...


class CommandError(subprocess.CalledProcessError):
    """kubectl or helm failed; unlike its base class, the message includes stderr."""

    def __str__(self) -> str:
        stderr = self.stderr.strip() if isinstance(self.stderr, str) else ""
        return f"{super().__str__()}\n{stderr}" if stderr else super().__str__()


@dataclass(frozen=True)
class ApiResponse:
    """An HTTP response from the API server, whatever its status."""

    status: int
    text: str

    def json(self) -> dict[str, Any]:
        """The body as a JSON object, or ``{}`` when it is not one (``/readyz`` says ``ok``)."""
        try:
            value = json.loads(self.text)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    @property
    def message(self) -> str:
        """A ``Status`` object's message (why a request was refused), else the raw text."""
        message = self.json().get("message")
        return message if isinstance(message, str) else self.text


# --- cleanup of everything this process started ------------------------------------------------

_cleanups: list[Callable[[], None]] = []
_cleanup_lock = threading.RLock()
_previous_signal_handlers: dict[int, Any] = {}
_exit_handlers_installed = False


def register_cleanup(callback: Callable[[], None]) -> None:
    """Run ``callback`` at interpreter exit or on SIGINT/SIGTERM/SIGHUP, newest first.

    Newest first matters: an operator process registered after its control plane must delete
    its webhook configurations while the API server is still up. The handlers are installed on
    the first registration, never at import time.
    """
    global _exit_handlers_installed
    with _cleanup_lock:
        _cleanups.append(callback)
        if _exit_handlers_installed:
            return
        _exit_handlers_installed = True
        atexit.register(_run_cleanups)
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread; atexit still works
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous = signal.getsignal(signum)
            if previous is signal.SIG_IGN or previous is None:
                continue  # someone decided this signal must not stop the process; respect it
            _previous_signal_handlers[signum] = previous
            signal.signal(signum, _on_exit_signal)


def unregister_cleanup(callback: Callable[[], None]) -> None:
    """Forget ``callback`` (it has run, or its resource was released another way)."""
    with _cleanup_lock, contextlib.suppress(ValueError):
        _cleanups.remove(callback)


def _run_cleanups() -> None:
    interrupted: BaseException | None = None
    while True:
        with _cleanup_lock:
            if not _cleanups:
                break
            callback = _cleanups.pop()
        try:
            callback()
        except KeyboardInterrupt as error:
            # A second Ctrl-C must not leave the remaining processes running: finish the list.
            interrupted = error
        except Exception as error:  # a failing cleanup must not stop the others
            print(f"[modelward_dev] cleanup {callback!r} failed: {error}", file=sys.stderr)
    if interrupted is not None:
        raise interrupted


def _on_exit_signal(signum: int, frame: FrameType | None) -> None:
    _run_cleanups()
    previous = _previous_signal_handlers.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)  # SIGINT: Python's default raises KeyboardInterrupt
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # die of the same signal, as the caller expects


# --- processes ----------------------------------------------------------------------------------


def free_ports(count: int) -> tuple[int, ...]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now.

    The sockets are held open together so the ports differ; another process can still take
    one before it is used, which is why startup retries on "address already in use".
    """
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return tuple(sock.getsockname()[1] for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


def loopback_opener(context: ssl.SSLContext | None = None) -> urllib.request.OpenerDirector:
    """A urllib opener that ignores ``*_proxy`` variables: everything here is on 127.0.0.1.

    urllib would otherwise send loopback requests to a corporate proxy configured for the
    package registries, and fail in confusing ways.
    """
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


def _linux_start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), to tell a recycled pid apart.

    None when unknown (not Linux, or no such process).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])  # field 22 of stat(5), counted from field 3


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes a child receive SIGKILL when this process dies (Linux).

    atexit and signal handlers cannot run when the test runner is SIGKILLed (a CI timeout);
    PR_SET_PDEATHSIG still stops etcd and kube-apiserver then. The kernel ties it to the
    *thread* that forks, so it is only used from the main thread, which lives as long as the
    process.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


class ManagedProcess:
    """A program run in its own process group, its output written to a log file.

    Its own group, so that stopping it also stops anything it spawned and a Ctrl-C in the
    terminal reaches only the test runner, which then stops its children in order. A
    ``detached`` process is meant to outlive this Python process (the demo cluster): it is not
    tied to this process's lifetime. ``adopt`` rebuilds the handle of a detached process
    started by an earlier command.
    """

    def __init__(
        self,
        *,
        name: str,
        args: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        detached: bool = False,
    ) -> None:
        self.name = name
        self.args = tuple(args)
        self.log_path = log_path
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._detached = detached
        self._popen: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._start_time: int | None = None

    @classmethod
    def adopt(cls, *, name: str, pid: int, start_time: int | None, log_path: Path) -> Self:
        """A handle on a process started earlier (by another command), identified by pid."""
        process = cls(name=name, args=(), log_path=log_path, detached=True)
        process._pid = pid
        process._start_time = start_time
        return process

    @property
    def pid(self) -> int:
        if self._pid is None:
            raise RuntimeError(f"{self.name} has not been started")
        return self._pid

    @property
    def start_time(self) -> int | None:
        """Kernel start time (Linux), stored with the pid so a recycled pid is never killed."""
        return self._start_time

    def start(self) -> None:
        if self._pid is not None:
            raise RuntimeError(f"{self.name} was already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._cwd,
                start_new_session=True,
                preexec_fn=None if self._detached else _die_with_parent_hook(),
            )
        self._pid = self._popen.pid
        self._start_time = _linux_start_time(self._pid)

    def returncode(self) -> int | None:
        """The exit code if it has exited (and is our child), else None."""
        return self._popen.poll() if self._popen is not None else None

    def running(self) -> bool:
        if self._pid is None:
            return False
        if self._popen is not None:
            return self._popen.poll() is None
        # An adopted process is not our child: ask the kernel, and make sure the pid was not
        # recycled for some other program since it was recorded.
        try:
            os.kill(self._pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return False  # a pid of another user's process: certainly not ours any more
        if _is_zombie(self._pid):
            return False
        return self._start_time is None or _linux_start_time(self._pid) == self._start_time

    def stop(self, *, grace: float = 10.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after ``grace`` seconds. Idempotent."""
        if not self.running():
            self._reap()
            return
        self._signal_group(signal.SIGTERM)
        if not self._wait(grace):
            self._signal_group(signal.SIGKILL)
            self._wait(5.0)
        # Children it may have spawned in its group: nothing of it may outlive stop().
        self._signal_group(signal.SIGKILL)
        self._reap()

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the process (SIGSTOP/SIGCONT to pause it in a test)."""
        if not self.running():
            raise RuntimeError(f"{self.name} is not running")
        os.kill(self.pid, signum)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log, for error messages."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                size = log.tell()
                log.seek(max(0, size - 64 * 1024))
                data = log.read().decode("utf-8", errors="replace")
        except OSError as error:
            return f"(cannot read {self.log_path}: {error})"
        return "\n".join(data.splitlines()[-lines:])

    def describe_failure(self, lines: int = 40) -> str:
        """What to tell a developer: the log path and its tail, indented."""
        tail = "\n".join(f"    {line}" for line in self.log_tail(lines).splitlines())
        return f"{self.name} log: {self.log_path}\n  last lines:\n{tail or '    (empty)'}"

    def _signal_group(self, signum: int) -> None:
        if self._pid is None:
            return
        # Only a process we started (or verified by start time) is signalled: never a stranger.
        if self._popen is None and not self.running():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, signum)

    def _wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if self._popen is not None:
            try:
                self._popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        while self.running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _reap(self) -> None:
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=1.0)


# --- the control plane ----------------------------------------------------------------------


def default_state_dir() -> Path:
    """Where the reusable demo control plane keeps its state: <cache>/demo-cluster."""
    return cache_dir() / "demo-cluster"


@dataclass(frozen=True)
class _Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int


class LocalControlPlane(StartStop):
    """etcd + kube-apiserver on free loopback ports, with an admin kubeconfig.

    The API server serves a certificate with IP SAN 127.0.0.1 (Go ignores the CN), authorises
    with RBAC, authenticates clients by certificate (the admin is CN=admin, O=system:masters)
    and signs service-account tokens, so RBAC and admission behave as in a real cluster. The
    ServiceAccount admission plugin is off because no controller-manager creates the
    ``default`` ServiceAccount that it would require of every pod.

    Attributes valid after ``start()``: ``work_dir``, ``kubeconfig_path``, ``server_url``,
    ``ca_pem``, ``ca_path``, ``admin_cert_path``, ``admin_key_path``, ``etcd_url``,
    ``apiserver_log_path``, ``etcd_log_path``, ``binaries``.
    """

    def __init__(
        self,
        *,
        binaries: ControlPlaneBinaries | None = None,
        work_dir: Path | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        keep_work_dir: bool = False,
        detached: bool = False,
        extra_apiserver_args: Sequence[str] = (),
        node_support: bool = False,
        service_cluster_ip_range: str = SERVICE_CLUSTER_IP_RANGE,
    ) -> None:
        """Describe a control plane; nothing starts before ``start()``.

        Args:
            binaries: the programs to run; found (or built) with ``find_binaries()`` if None.
            work_dir: folder for data, certificates, logs and the kubeconfig; a new temporary
                folder if None. A given folder is never deleted by ``stop()``.
            startup_timeout: seconds allowed for etcd and kube-apiserver to become ready.
            keep_work_dir: keep the temporary folder (logs) after ``stop()``, to debug.
            detached: let the processes outlive this Python process (the demo cluster); they
                are not stopped at exit, only by ``stop()``.
            extra_apiserver_args: appended to kube-apiserver's flags (e.g. feature gates).
            node_support: configure the API server for a kubelet and controllers
                (``modelward_dev.cluster``): a client certificate to call the kubelet (logs,
                exec), the ServiceAccount admission plugin (pods get tokens; it needs the
                controller-manager to create each namespace's ``default`` ServiceAccount), and
                ``--enable-aggregator-routing`` so webhook Services are dialled at their
                endpoints (no kube-proxy routes ClusterIPs).
            service_cluster_ip_range: the Services' range; its first address is the
                ``kubernetes`` Service's ClusterIP, which the serving certificate names.
        """
        self._binaries = binaries
        self._given_work_dir = work_dir
        self._startup_timeout = startup_timeout
        self._keep_work_dir = keep_work_dir or work_dir is not None
        self._detached = detached
        self._extra_apiserver_args = tuple(extra_apiserver_args)
        self._node_support = node_support
        self._service_range = ipaddress.ip_network(service_cluster_ip_range)
        self._work_dir: Path | None = None
        self._ports: _Ports | None = None
        self._etcd: ManagedProcess | None = None
        self._apiserver: ManagedProcess | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self._ca_pem: bytes | None = None
        self._state_file: Path | None = None
        self._lock = threading.RLock()

    # -- lifecycle --

    def start(self) -> None:
        """Start etcd and kube-apiserver and wait until the ``default`` namespace exists.

        Raises:
            BinariesUnavailableError: the binaries are missing and cannot be built.
            ControlPlaneError: a process died or was not ready in time; the message names its
                log file and quotes its last lines. The logs are kept.
        """
        with self._lock:
            if self._apiserver is not None:
                raise RuntimeError("this control plane was already started")
            binaries = self._binaries or find_binaries()
            self._binaries = binaries
            if self._given_work_dir is not None:
                self._work_dir = self._given_work_dir.resolve()
                self._work_dir.mkdir(parents=True, exist_ok=True)
            else:
                self._work_dir = Path(tempfile.mkdtemp(prefix="modelward-cp-"))
            self._write_pki()
            if not self._detached:
                register_cleanup(self.stop)
            deadline = time.monotonic() + self._startup_timeout
            for attempt in range(1, _PORT_RETRIES + 1):
                try:
                    self._start_processes(binaries, deadline=deadline)
                except _PortTakenError:
                    self._stop_processes()
                    if attempt == _PORT_RETRIES:
                        raise ControlPlaneError(
                            f"could not find free ports after {attempt} attempts; logs in "
                            f"{self.work_dir / 'logs'}"
                        ) from None
                    continue
                except BaseException:
                    # Keep the logs: the error message points at them.
                    self._keep_work_dir = True
                    self.stop()
                    raise
                return

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd, and delete the temporary folder. Idempotent.

        Safe to call from a signal handler or atexit, and after a failed ``start()``.
        """
        with self._lock:
            unregister_cleanup(self.stop)
            self._stop_processes()
            if self._state_file is not None:
                with contextlib.suppress(FileNotFoundError):
                    self._state_file.unlink()
            if self._work_dir is not None and not self._keep_work_dir:
                shutil.rmtree(self._work_dir, ignore_errors=True)

    def _stop_processes(self) -> None:
        # The API server first: stopping etcd under it only makes it log errors while it
        # shuts down.
        for process in (self._apiserver, self._etcd):
            if process is not None:
                process.stop(grace=10.0)

    def compact_etcd(self) -> int:
        """Compact etcd's history up to now; returns the revision.

        Watches resuming from an older resourceVersion then get "410 Gone" from etcd as well
        as from a fresh watch cache, whatever the API server's cache would otherwise replay.
        """

        def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
            request = urllib.request.Request(
                f"{self.etcd_url}{path}",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with loopback_opener().open(request, timeout=10.0) as response:
                answer: dict[str, Any] = json.loads(response.read())
            return answer

        revision = int(
            call("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})["header"]["revision"]
        )
        call("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    def restart_apiserver(self, *, timeout: float = DEFAULT_STARTUP_TIMEOUT) -> None:
        """Stop kube-apiserver and start it again on the same port, keeping etcd's data.

        Every watch is cut, and the new server's watch cache starts at etcd's current
        revision: a client resuming a watch from an older resourceVersion gets "410 Gone" and
        must re-list, which never reports what was deleted in between.
        """
        with self._lock:
            old = self._apiserver
            if old is None:
                raise RuntimeError("the control plane has not been started")
            old.stop(grace=10.0)
            self._apiserver = ManagedProcess(
                name=old.name,
                args=old.args,
                log_path=old.log_path,
                cwd=self.work_dir,
                detached=self._detached,
            )
            self._apiserver.start()
            self._wait_for_apiserver(time.monotonic() + timeout)

    @property
    def processes(self) -> tuple[ManagedProcess, ...]:
        """etcd and kube-apiserver (those started so far), e.g. to check their pids."""
        return tuple(p for p in (self._etcd, self._apiserver) if p is not None)

    def is_running(self) -> bool:
        """Both processes are alive (does not check that the API server answers)."""
        return all(p is not None and p.running() for p in (self._etcd, self._apiserver))

    def is_ready(self, *, timeout: float = 5.0) -> bool:
        """The API server answers ``/readyz`` with 200 right now."""
        try:
            return self.api_request("GET", "/readyz", timeout=timeout).status == 200
        except (OSError, ssl.SSLError, RuntimeError):
            return False

    # -- public attributes --

    @property
    def binaries(self) -> ControlPlaneBinaries:
        if self._binaries is None:
            raise RuntimeError("the control plane has not been started")
        return self._binaries

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            raise RuntimeError("the control plane has not been started")
        return self._work_dir

    @property
    def kubeconfig_path(self) -> Path:
        return self.work_dir / "kubeconfig"

    @property
    def ca_path(self) -> Path:
        """The CA that signed the API server's serving certificate (PEM)."""
        return self.work_dir / "pki" / "serving-ca.crt"

    @property
    def ca_pem(self) -> bytes:
        if self._ca_pem is None:
            self._ca_pem = self.ca_path.read_bytes()
        return self._ca_pem

    @property
    def webhook_client_ca_path(self) -> Path:
        """The CA of the client certificate kube-apiserver presents to admission webhooks
        (give it to ``modelward run --client-ca-file``)."""
        return self.work_dir / "pki" / "client-ca.crt"

    @property
    def admin_cert_path(self) -> Path:
        return self.work_dir / "pki" / "admin.crt"

    @property
    def admin_key_path(self) -> Path:
        return self.work_dir / "pki" / "admin.key"

    @property
    def client_ca_path(self) -> Path:
        """The CA the API server (and a node's kubelet) trusts for client certificates."""
        return self.work_dir / "pki" / "client-ca.crt"

    @property
    def service_account_key_path(self) -> Path:
        """The key that signs service-account tokens (the controller-manager needs it)."""
        return self.work_dir / "pki" / "service-accounts.key"

    @property
    def kubernetes_service_ip(self) -> str:
        """ClusterIP of the ``kubernetes`` Service: what pods' in-cluster config dials."""
        return str(self._service_range.network_address + 1)

    @property
    def node_support(self) -> bool:
        return self._node_support

    def issue_client_kubeconfig(
        self, name: str, *, common_name: str, organization: str | None = None
    ) -> Path:
        """A kubeconfig for a new client certificate (kubelet, scheduler...): its path.

        The certificate is signed by the client CA the API server trusts; ``organization``
        becomes the user's group (``system:masters`` for components of the test cluster).
        """
        pki = self.work_dir / "pki"
        client_ca = KeyPair(
            cert_pem=(pki / "client-ca.crt").read_bytes(),
            key_pem=(pki / "client-ca.key").read_bytes(),
        )
        pair = issue_certificate(
            client_ca, common_name=common_name, organization=organization, client=True
        )
        _write_private(pki / f"{name}.crt", pair.cert_pem)
        _write_private(pki / f"{name}.key", pair.key_pem)
        path = self.work_dir / f"kubeconfig-{name}"
        self._write_kubeconfig(path=path, cert_pem=pair.cert_pem, key_pem=pair.key_pem, user=name)
        return path

    @property
    def apiserver_log_path(self) -> Path:
        return self.work_dir / "logs" / "kube-apiserver.log"

    @property
    def etcd_log_path(self) -> Path:
        return self.work_dir / "logs" / "etcd.log"

    @property
    def _ports_or_fail(self) -> _Ports:
        if self._ports is None:
            raise RuntimeError("the control plane has not been started")
        return self._ports

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self._ports_or_fail.apiserver}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self._ports_or_fail.etcd_client}"

    # -- command-line tools --

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 60.0,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl as the admin user against this control plane (text output captured).

        Raises:
            CommandError: ``check`` is true and kubectl failed (the message quotes stderr).
            subprocess.TimeoutExpired: it ran longer than ``timeout`` seconds.
        """
        return self._run_tool(
            self.binaries.kubectl, args, input=input, timeout=timeout, check=check
        )

    def helm(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 300.0,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run helm against this control plane, like ``kubectl()``."""
        return self._run_tool(self.binaries.helm, args, input=input, timeout=timeout, check=check)

    def _run_tool(
        self,
        binary: Path,
        args: Sequence[str],
        *,
        input: str | None,
        timeout: float,
        check: bool,
    ) -> subprocess.CompletedProcess[str]:
        return run_tool(
            binary, args, kubeconfig=self.kubeconfig_path, input=input, timeout=timeout, check=check
        )

    # -- talking to the API server --

    def api_request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> ApiResponse:
        """One request as the admin user; any HTTP status is returned, not raised.

        Deliberately plain (urllib, no kubernetes client): the harness uses it to wait for
        readiness and to register webhooks, where a client's retries and caching would hide
        what the API server actually answered.
        """
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.server_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with loopback_opener(self._client_ssl_context()).open(
                request, timeout=timeout
            ) as response:
                return ApiResponse(response.status, response.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as error:
            with error:
                return ApiResponse(error.code, error.read().decode("utf-8", "replace"))

    def _client_ssl_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            context = ssl.create_default_context(cafile=str(self.ca_path))
            context.load_cert_chain(str(self.admin_cert_path), str(self.admin_key_path))
            self._ssl_context = context
        return self._ssl_context

    # -- startup internals --

    def _write_pki(self) -> None:
        pki = self.work_dir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        serving_ca = create_ca(common_name="modelward-local-apiserver-ca")
        serving = issue_certificate(
            serving_ca,
            common_name="kube-apiserver",
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            ip_addresses=("127.0.0.1", self.kubernetes_service_ip),
        )
        client_ca = create_ca(common_name="modelward-local-client-ca")
        admin = issue_certificate(
            client_ca, common_name="admin", organization="system:masters", client=True
        )
        # The certificate the API server presents to admission webhooks (its
        # AdmissionConfiguration below), so a webhook can refuse every other caller.
        webhook_client = issue_certificate(
            client_ca, common_name="kube-apiserver-webhook-client", client=True
        )
        # The service-account signing key only needs a key pair; a CA's is as good as any and
        # keeps every key of the harness coming from modelward.certs.
        service_accounts = create_ca(common_name="modelward-local-service-accounts")
        files: dict[str, bytes] = {
            "serving-ca.crt": serving_ca.cert_pem,
            "apiserver.crt": serving.cert_pem,
            "apiserver.key": serving.key_pem,
            "client-ca.crt": client_ca.cert_pem,
            "client-ca.key": client_ca.key_pem,
            "admin.crt": admin.cert_pem,
            "admin.key": admin.key_pem,
            "webhook-client.crt": webhook_client.cert_pem,
            "webhook-client.key": webhook_client.key_pem,
            "service-accounts.key": service_accounts.key_pem,
            "service-accounts.pub": _public_key_pem(service_accounts),
        }
        if self._node_support:
            kubelet_client = issue_certificate(
                client_ca,
                common_name="kube-apiserver-kubelet-client",
                organization="system:masters",
                client=True,
            )
            files["kubelet-client.crt"] = kubelet_client.cert_pem
            files["kubelet-client.key"] = kubelet_client.key_pem
        for name, content in files.items():
            _write_private(pki / name, content)
        # kube-apiserver authenticates to webhooks with the kubeconfig its admission
        # configuration names; the user "*" matches every webhook host.
        webhook_kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "users": [
                {
                    "name": "*",
                    "user": {
                        "client-certificate": str(pki / "webhook-client.crt"),
                        "client-key": str(pki / "webhook-client.key"),
                    },
                }
            ],
        }
        _write_private(pki / "webhook-kubeconfig", yaml.safe_dump(webhook_kubeconfig).encode())
        plugin = {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "WebhookAdmissionConfiguration",
            "kubeConfigFile": str(pki / "webhook-kubeconfig"),
        }
        admission = {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "AdmissionConfiguration",
            "plugins": [
                {"name": name, "configuration": plugin}
                for name in ("ValidatingAdmissionWebhook", "MutatingAdmissionWebhook")
            ],
        }
        _write_private(pki / "admission.yaml", yaml.safe_dump(admission).encode())
        self._ca_pem = serving_ca.cert_pem
        self._ssl_context = None

    def _start_processes(self, binaries: ControlPlaneBinaries, *, deadline: float) -> None:
        etcd_port, peer_port, apiserver_port = free_ports(3)
        self._ports = _Ports(etcd_port, peer_port, apiserver_port)
        logs = self.work_dir / "logs"
        # Fresh logs per attempt, so a tail quoted in an error is about this attempt.
        for log in (self.etcd_log_path, self.apiserver_log_path):
            with contextlib.suppress(FileNotFoundError):
                log.unlink()
        logs.mkdir(parents=True, exist_ok=True)

        etcd_data = self.work_dir / "etcd"
        shutil.rmtree(etcd_data, ignore_errors=True)
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._etcd = ManagedProcess(
            name="etcd",
            args=[
                str(binaries.etcd),
                "--name=modelward-local",
                f"--data-dir={etcd_data}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=modelward-local={peer_url}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            log_path=self.etcd_log_path,
            cwd=self.work_dir,
            detached=self._detached,
        )
        self._etcd.start()
        self._wait_for_etcd(deadline)

        pki = self.work_dir / "pki"
        self._apiserver = ManagedProcess(
            name="kube-apiserver",
            args=[
                str(binaries.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                f"--secure-port={apiserver_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'client-ca.crt'}",
                f"--admission-control-config-file={pki / 'admission.yaml'}",
                f"--service-cluster-ip-range={self._service_range}",
                "--allow-privileged=true",
                "--authorization-mode=RBAC",
                *self._node_args(pki),
                f"--service-account-issuer={self.server_url}/",
                f"--service-account-key-file={pki / 'service-accounts.pub'}",
                f"--service-account-signing-key-file={pki / 'service-accounts.key'}",
                "--endpoint-reconciler-type=none",
                *self._extra_apiserver_args,
            ],
            log_path=self.apiserver_log_path,
            cwd=self.work_dir,
            detached=self._detached,
        )
        self._apiserver.start()
        self._write_kubeconfig()
        self._wait_for_apiserver(deadline)

    def _node_args(self, pki: Path) -> list[str]:
        if not self._node_support:
            # No controller-manager creates the `default` ServiceAccount this plugin requires.
            return ["--disable-admission-plugins=ServiceAccount"]
        return [
            f"--kubelet-client-certificate={pki / 'kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'kubelet-client.key'}",
            "--enable-aggregator-routing=true",
        ]

    def _wait_for_etcd(self, deadline: float) -> None:
        assert self._etcd is not None
        last = "no answer yet"
        while True:
            self._fail_if_exited(self._etcd)
            try:
                with loopback_opener().open(f"{self.etcd_url}/health", timeout=2.0) as response:
                    health = json.loads(response.read())
                if health.get("health") == "true":
                    return
                last = f"health {health}"
            except (OSError, ValueError) as error:
                last = str(error)
            self._fail_if_late(self._etcd, deadline, f"etcd /health ({last})")
            time.sleep(0.1)

    def _wait_for_apiserver(self, deadline: float) -> None:
        assert self._apiserver is not None
        last = "no answer yet"
        for path, what in (("/readyz", "/readyz"), ("/api/v1/namespaces/default", "namespace")):
            while True:
                self._fail_if_exited(self._apiserver)
                self._fail_if_exited(self._etcd)
                try:
                    response = self.api_request("GET", path, timeout=5.0)
                    if response.status == 200:
                        break
                    last = f"HTTP {response.status}: {response.text.strip()[-500:]}"
                except (OSError, ssl.SSLError) as error:
                    last = str(error)
                self._fail_if_late(
                    self._apiserver, deadline, f"kube-apiserver {what} at {path} ({last})"
                )
                time.sleep(0.25)

    def _fail_if_exited(self, process: ManagedProcess | None) -> None:
        if process is None or process.running():
            return
        tail = process.log_tail(80)
        if "address already in use" in tail:
            raise _PortTakenError(process.name)
        raise ControlPlaneError(
            f"{process.name} exited during startup with code {process.returncode()}.\n"
            + process.describe_failure()
        )

    def _fail_if_late(self, process: ManagedProcess, deadline: float, waiting_for: str) -> None:
        if time.monotonic() < deadline:
            return
        raise ControlPlaneError(
            f"the local control plane was not ready after {self._startup_timeout:.0f} s; "
            f"still waiting for {waiting_for}.\n" + process.describe_failure()
        )

    def _write_kubeconfig(
        self,
        *,
        path: Path | None = None,
        cert_pem: bytes | None = None,
        key_pem: bytes | None = None,
        user: str = "admin",
    ) -> None:
        pki = self.work_dir / "pki"
        cert_pem = cert_pem if cert_pem is not None else (pki / "admin.crt").read_bytes()
        key_pem = key_pem if key_pem is not None else (pki / "admin.key").read_bytes()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": CONTEXT_NAME,
                    "cluster": {
                        "server": self.server_url,
                        "certificate-authority-data": _b64(self.ca_pem),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": _b64(cert_pem),
                        "client-key-data": _b64(key_pem),
                    },
                }
            ],
            "contexts": [
                {
                    "name": CONTEXT_NAME,
                    "context": {"cluster": CONTEXT_NAME, "user": user, "namespace": "default"},
                }
            ],
            "current-context": CONTEXT_NAME,
        }
        # 0600: helm warns about, and other tools refuse, a group-readable kubeconfig.
        _write_private(
            path or self.kubeconfig_path, yaml.safe_dump(config, sort_keys=False).encode()
        )

    # -- the reusable demo control plane --

    @classmethod
    def reuse_or_start(
        cls,
        state_dir: Path | None = None,
        *,
        binaries: ControlPlaneBinaries | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> LocalControlPlane:
        """The control plane described by ``state_dir``, started if it is not answering.

        For the demo: commands run one after another share one cluster that outlives each of
        them. A stale state (processes gone, or not ready) is cleaned up and replaced by a fresh
        cluster; its data is not kept. The result is detached: leaving a ``with`` block or
        exiting does not stop it; ``stop()`` or ``stop_reusable()`` does.
        """
        state_dir = (state_dir or default_state_dir()).resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(state_dir / ".lock"):
            existing = cls._from_state(state_dir)
            if existing is not None:
                if existing.is_running() and existing.is_ready():
                    return existing
                existing._stop_processes()
                (state_dir / "state.json").unlink(missing_ok=True)
            work_dir = state_dir / "cluster"
            shutil.rmtree(work_dir, ignore_errors=True)
            control_plane = cls(
                binaries=binaries,
                work_dir=work_dir,
                startup_timeout=startup_timeout,
                detached=True,
            )
            control_plane.start()
            control_plane._write_state(state_dir / "state.json")
            return control_plane

    @classmethod
    def reusable_is_running(cls, state_dir: Path | None = None) -> bool:
        """Whether a reusable control plane recorded in ``state_dir`` answers right now."""
        state_dir = (state_dir or default_state_dir()).resolve()
        existing = cls._from_state(state_dir) if state_dir.is_dir() else None
        return existing is not None and existing.is_running() and existing.is_ready()

    @classmethod
    def stop_reusable(cls, state_dir: Path | None = None) -> bool:
        """Stop the control plane described by ``state_dir``; False if none was recorded."""
        state_dir = (state_dir or default_state_dir()).resolve()
        if not state_dir.is_dir():
            return False
        with _exclusive_lock(state_dir / ".lock"):
            existing = cls._from_state(state_dir)
            if existing is None:
                return False
            existing.stop()
            return True

    def _write_state(self, path: Path) -> None:
        assert self._etcd is not None and self._apiserver is not None and self._ports is not None
        state = {
            "format": _STATE_FORMAT,
            "work_dir": str(self.work_dir),
            "server_url": self.server_url,
            "kubeconfig": str(self.kubeconfig_path),
            "ports": {
                "etcd_client": self._ports.etcd_client,
                "etcd_peer": self._ports.etcd_peer,
                "apiserver": self._ports.apiserver,
            },
            "processes": {
                process.name: {"pid": process.pid, "start_time": process.start_time}
                for process in (self._etcd, self._apiserver)
            },
            "binaries": {name: str(p) for name, p in self.binaries.as_dict().items()},
        }
        path.write_text(json.dumps(state, indent=2) + "\n")
        self._state_file = path

    @classmethod
    def _from_state(cls, state_dir: Path) -> LocalControlPlane | None:
        path = state_dir / "state.json"
        try:
            state = json.loads(path.read_text())
            if state.get("format") != _STATE_FORMAT:
                raise ValueError(f"unknown state format {state.get('format')!r}")
            work_dir = Path(state["work_dir"])
            ports = _Ports(**state["ports"])
            binaries = ControlPlaneBinaries(
                kube_apiserver=Path(state["binaries"]["kube-apiserver"]),
                etcd=Path(state["binaries"]["etcd"]),
                kubectl=Path(state["binaries"]["kubectl"]),
                helm=Path(state["binaries"]["helm"]),
            )
            processes = state["processes"]
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as error:
            print(f"[modelward_dev] ignoring unreadable {path}: {error}", file=sys.stderr)
            return None
        control_plane = cls(binaries=binaries, work_dir=work_dir, detached=True)
        control_plane._work_dir = work_dir
        control_plane._ports = ports
        control_plane._state_file = path
        control_plane._etcd = ManagedProcess.adopt(
            name="etcd",
            pid=processes["etcd"]["pid"],
            start_time=processes["etcd"]["start_time"],
            log_path=control_plane.etcd_log_path,
        )
        control_plane._apiserver = ManagedProcess.adopt(
            name="kube-apiserver",
            pid=processes["kube-apiserver"]["pid"],
            start_time=processes["kube-apiserver"]["start_time"],
            log_path=control_plane.apiserver_log_path,
        )
        return control_plane


class _PortTakenError(Exception):
    """A process lost the race for its port; startup retries with new ports."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _public_key_pem(pair: KeyPair) -> bytes:
    return pair.certificate.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _write_private(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(content)


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Serialise demo commands that could otherwise start two clusters in one state folder."""
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m modelward_dev.controlplane up|status|down``: the demo's long-lived cluster."""
    parser = argparse.ArgumentParser(
        prog="python -m modelward_dev.controlplane",
        description="Start, show or stop the reusable local control plane used by the demo.",
    )
    parser.add_argument("command", choices=("up", "status", "down"))
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="default: <cache>/demo-cluster"
    )
    args = parser.parse_args(argv)
    state_dir: Path | None = args.state_dir
    if args.command == "up":
        started = time.monotonic()
        try:
            control_plane = LocalControlPlane.reuse_or_start(state_dir)
        except ControlPlaneError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"# control plane at {control_plane.server_url} ({time.monotonic() - started:.1f} s)")
        print(f"export KUBECONFIG={control_plane.kubeconfig_path}")
        return 0
    if args.command == "status":
        existing = LocalControlPlane._from_state((state_dir or default_state_dir()).resolve())
        if existing is None or not existing.is_ready():
            print("not running")
            return 1
        print(f"running at {existing.server_url}; KUBECONFIG={existing.kubeconfig_path}")
        return 0
    print("stopped" if LocalControlPlane.stop_reusable(state_dir) else "was not running")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
