"""Where the control-plane binaries live, and building them when they are missing.

The binaries are too big (and too platform-specific) for the repository, and no package
registry ships a kube-apiserver, so ``hack/build-control-plane.sh`` builds them from the Go
module proxy into a cache outside the repository, one folder per component and version. This
module knows that layout, so tests and the demo find the same binaries the script built.

``KUBEBUILDER_ASSETS`` (the folder envtest's ``setup-envtest`` downloads into) takes precedence
for kube-apiserver, etcd and kubectl, so a developer with envtest assets never builds anything.
Helm is not part of envtest's assets: it is taken from that folder when present, else from the
cache.
"""

from __future__ import annotations

import collections
import fcntl
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = [
    "CONTAINERD_VERSION",
    "COSIGN_VERSION",
    "ETCD_VERSION",
    "HELM_VERSION",
    "K8S_VERSION",
    "BinariesUnavailableError",
    "ControlPlaneBinaries",
    "NodeBinaries",
    "build_script_path",
    "cache_dir",
    "cosign_build_script_path",
    "expected_binaries",
    "expected_cosign",
    "expected_node_binaries",
    "find_binaries",
    "find_cosign",
    "find_node_binaries",
    "missing_binaries",
    "node_build_script_path",
]

#: Versions built by default; they must match the defaults of ``hack/build-control-plane.sh``.
K8S_VERSION = "1.37.2"
ETCD_VERSION = "3.7.3"
HELM_VERSION = "4.3.1"

_BUILD_LOG_TAIL_LINES = 30


class BinariesUnavailableError(RuntimeError):
    """The binaries are missing and could not be built; the message says what to do."""


@dataclass(frozen=True)
class ControlPlaneBinaries:
    """Absolute paths of the four programs the harness runs."""

    kube_apiserver: Path
    etcd: Path
    kubectl: Path
    helm: Path

    def as_dict(self) -> dict[str, Path]:
        """The paths keyed by program name, in a stable order (for messages and loops)."""
        return {
            "kube-apiserver": self.kube_apiserver,
            "etcd": self.etcd,
            "kubectl": self.kubectl,
            "helm": self.helm,
        }


def build_script_path() -> Path:
    """``hack/build-control-plane.sh`` of the repository this package belongs to."""
    return Path(__file__).resolve().parent.parent / "build-control-plane.sh"


def cache_dir(*, environ: Mapping[str, str] | None = None) -> Path:
    """The cache root shared with the build script: ``$MODELWARD_CACHE`` or ~/.cache/modelward."""
    env = os.environ if environ is None else environ
    override = env.get("MODELWARD_CACHE")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "modelward"


def expected_binaries(*, environ: Mapping[str, str] | None = None) -> ControlPlaneBinaries:
    """Where each binary should be, whether or not it exists yet."""
    env = os.environ if environ is None else environ
    bin_root = cache_dir(environ=env) / "bin"
    kubernetes = bin_root / f"kubernetes-v{K8S_VERSION}"
    etcd = bin_root / f"etcd-v{ETCD_VERSION}" / "etcd"
    helm = bin_root / f"helm-v{HELM_VERSION}" / "helm"
    assets_value = env.get("KUBEBUILDER_ASSETS")
    if assets_value:
        assets = Path(assets_value).expanduser().resolve()
        if _is_executable(assets / "helm"):
            helm = assets / "helm"
        return ControlPlaneBinaries(
            kube_apiserver=assets / "kube-apiserver",
            etcd=assets / "etcd",
            kubectl=assets / "kubectl",
            helm=helm,
        )
    return ControlPlaneBinaries(
        kube_apiserver=kubernetes / "kube-apiserver",
        etcd=etcd,
        kubectl=kubernetes / "kubectl",
        helm=helm,
    )


def missing_binaries(binaries: ControlPlaneBinaries) -> dict[str, Path]:
    """The programs of ``binaries`` that are absent or not executable, by name."""
    return {name: path for name, path in binaries.as_dict().items() if not _is_executable(path)}


def find_binaries(
    *,
    build: bool = True,
    environ: Mapping[str, str] | None = None,
    build_script: Path | None = None,
) -> ControlPlaneBinaries:
    """The binaries, built first with ``hack/build-control-plane.sh`` if any is missing.

    The build streams its progress to stderr (a cold build takes 20-30 minutes on 2 cores, so
    silence would look like a hang) and is serialised with a lock file in the cache, so that
    parallel test runs wait for one build instead of racing two into the same folders.

    Raises:
        BinariesUnavailableError: a binary is missing and ``build`` is false, the build failed,
            or ``KUBEBUILDER_ASSETS`` points at a folder without the programs (building would
            not help: the script never writes there).
    """
    env = dict(os.environ if environ is None else environ)
    binaries = expected_binaries(environ=env)
    missing = missing_binaries(binaries)
    if not missing:
        return binaries

    assets = env.get("KUBEBUILDER_ASSETS")
    from_assets = {name: p for name, p in missing.items() if name != "helm"}
    if assets and from_assets:
        raise BinariesUnavailableError(
            f"KUBEBUILDER_ASSETS={assets} has no executable {', '.join(from_assets)} "
            f"(looked for {', '.join(str(p) for p in from_assets.values())}). Point it at a "
            "folder holding kube-apiserver, etcd and kubectl (e.g. from `setup-envtest use`), "
            "or unset it to build them with hack/build-control-plane.sh."
        )
    script = build_script or build_script_path()
    if not build:
        raise BinariesUnavailableError(
            _missing_message(missing)
            + f"Build them with {script} (20-30 min when cold), or set KUBEBUILDER_ASSETS to a "
            "folder holding kube-apiserver, etcd and kubectl."
        )

    _run_build(script, env=env, missing=missing)
    still_missing = missing_binaries(binaries)
    if still_missing:
        raise BinariesUnavailableError(
            _missing_message(still_missing)
            + f"{script} finished without producing them; check its output above."
        )
    return binaries


def _missing_message(missing: Mapping[str, Path]) -> str:
    listing = "; ".join(f"{name} at {path}" for name, path in missing.items())
    return f"modelward's local control plane needs binaries that are missing: {listing}. "


def _run_build(script: Path, *, env: dict[str, str], missing: Mapping[str, Path]) -> None:
    """Run the build script under the cache's build lock, echoing its output to stderr."""
    if not script.is_file():
        raise BinariesUnavailableError(
            _missing_message(missing) + f"The build script {script} does not exist either."
        )
    # Pin the versions this module expects: an unrelated K8S_VERSION in the environment
    # would otherwise build into a folder nobody looks in.
    env.update(K8S_VERSION=K8S_VERSION, ETCD_VERSION=ETCD_VERSION, HELM_VERSION=HELM_VERSION)
    cache = cache_dir(environ=env)
    cache.mkdir(parents=True, exist_ok=True)
    names = ", ".join(missing)
    tail: collections.deque[str] = collections.deque(maxlen=_BUILD_LOG_TAIL_LINES)
    with (cache / "build.lock").open("w") as lock:
        if not _try_lock(lock):
            print(
                f"[modelward_dev] waiting for another build in {cache}",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(lock, fcntl.LOCK_EX)
        print(
            f"[modelward_dev] missing {names}: running {script} (minutes on a cold cache)",
            file=sys.stderr,
            flush=True,
        )
        try:
            process = subprocess.Popen(
                ["bash", str(script)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        except OSError as error:
            raise BinariesUnavailableError(
                _missing_message(missing) + f"Could not run {script}: {error}"
            ) from error
        assert process.stdout is not None
        with process:
            for line in process.stdout:
                tail.append(line.rstrip("\n"))
                sys.stderr.write(line)
                sys.stderr.flush()
        returncode = process.wait()
    if returncode != 0:
        output = "\n".join(f"    {line}" for line in tail)
        raise BinariesUnavailableError(
            _missing_message(missing)
            + f"Building them with {script} failed (exit code {returncode}). Last lines of "
            f"its output:\n{output}\nFix the cause above, or set KUBEBUILDER_ASSETS to a folder "
            "holding kube-apiserver, etcd and kubectl."
        )


def _try_lock(lock_file: IO[str]) -> bool:
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


# --- the test node: kubelet, scheduler, controller-manager, containerd ---------------------------

#: containerd built from the Go module proxy: image volumes need >= 2.1 (Debian has 1.6).
CONTAINERD_VERSION = "2.4.2"
RUNC = Path("/usr/sbin/runc")
CNI_PLUGIN_DIR = Path("/usr/lib/cni")


@dataclass(frozen=True)
class NodeBinaries:
    """The programs of a local node and of the controllers that make it a cluster."""

    kubelet: Path
    kube_scheduler: Path
    kube_controller_manager: Path
    containerd: Path
    containerd_shim: Path
    ctr: Path
    runc: Path = RUNC
    cni_plugin_dir: Path = CNI_PLUGIN_DIR

    def built(self) -> dict[str, Path]:
        """The programs ``hack/build-node.sh`` builds, by name."""
        return {
            "kubelet": self.kubelet,
            "kube-scheduler": self.kube_scheduler,
            "kube-controller-manager": self.kube_controller_manager,
            "containerd": self.containerd,
            "containerd-shim-runc-v2": self.containerd_shim,
            "ctr": self.ctr,
        }


def node_build_script_path() -> Path:
    """``hack/build-node.sh`` of the repository this package belongs to."""
    return Path(__file__).resolve().parent.parent / "build-node.sh"


def expected_node_binaries(*, environ: Mapping[str, str] | None = None) -> NodeBinaries:
    """Where each node program should be, whether or not it exists yet."""
    bin_root = cache_dir(environ=environ) / "bin"
    kubernetes = bin_root / f"kubernetes-v{K8S_VERSION}"
    containerd = bin_root / f"containerd-v{CONTAINERD_VERSION}"
    return NodeBinaries(
        kubelet=kubernetes / "kubelet",
        kube_scheduler=kubernetes / "kube-scheduler",
        kube_controller_manager=kubernetes / "kube-controller-manager",
        containerd=containerd / "containerd",
        containerd_shim=containerd / "containerd-shim-runc-v2",
        ctr=containerd / "ctr",
    )


def find_node_binaries(
    *, build: bool = True, environ: Mapping[str, str] | None = None
) -> NodeBinaries:
    """The node's programs, built first with ``hack/build-node.sh`` if any is missing.

    runc and the CNI plugins come from Debian packages (``hack/install-system-deps.sh``);
    they are checked, not built.

    Raises:
        BinariesUnavailableError: a program is missing and cannot be built (the message says
            which, and how to get it).
    """
    env = dict(os.environ if environ is None else environ)
    binaries = expected_node_binaries(environ=env)
    system = {"runc": binaries.runc, "bridge CNI plugin": binaries.cni_plugin_dir / "bridge"}
    absent = [f"{name} at {path}" for name, path in system.items() if not _is_executable(path)]
    if absent:
        raise BinariesUnavailableError(
            f"the local node needs {', '.join(absent)}: run hack/install-system-deps.sh "
            "(Debian packages runc and containernetworking-plugins)."
        )
    missing = {n: p for n, p in binaries.built().items() if not _is_executable(p)}
    if not missing:
        return binaries
    script = node_build_script_path()
    if not build:
        raise BinariesUnavailableError(
            _missing_message(missing) + f"Build them with {script} (~10 min when cold)."
        )
    env.update(K8S_VERSION=K8S_VERSION, CONTAINERD_VERSION=CONTAINERD_VERSION)
    _run_build(script, env=env, missing=missing)
    still = {n: p for n, p in binaries.built().items() if not _is_executable(p)}
    if still:
        raise BinariesUnavailableError(
            _missing_message(still) + f"{script} finished without producing them."
        )
    return binaries


# --- cosign, for the image-signature tests --------------------------------------------------------

#: cosign built from the Go module proxy (v3: the v2 line needs an older Go than this one).
#: Must match the default of ``hack/build-cosign.sh``.
COSIGN_VERSION = "3.1.3"


def cosign_build_script_path() -> Path:
    """``hack/build-cosign.sh`` in this checkout."""
    return Path(__file__).resolve().parents[1] / "build-cosign.sh"


def expected_cosign(*, environ: Mapping[str, str] | None = None) -> Path:
    """Where ``hack/build-cosign.sh`` puts cosign: ``<cache>/bin/cosign-v<version>/cosign``."""
    return cache_dir(environ=environ) / "bin" / f"cosign-v{COSIGN_VERSION}" / "cosign"


def find_cosign(*, build: bool = True, environ: Mapping[str, str] | None = None) -> Path:
    """The cosign binary, built first with ``hack/build-cosign.sh`` if it is missing.

    Raises:
        BinariesUnavailableError: it is missing and cannot be built (the message says how).
    """
    env = dict(os.environ if environ is None else environ)
    cosign = expected_cosign(environ=env)
    if _is_executable(cosign):
        return cosign
    script = cosign_build_script_path()
    missing = {"cosign": cosign}
    if not build:
        raise BinariesUnavailableError(
            _missing_message(missing) + f"Build it with {script} (~5-15 min when cold)."
        )
    env.update(COSIGN_VERSION=COSIGN_VERSION)
    _run_build(script, env=env, missing=missing)
    if not _is_executable(cosign):
        raise BinariesUnavailableError(
            _missing_message(missing) + f"{script} finished without producing it."
        )
    return cosign
