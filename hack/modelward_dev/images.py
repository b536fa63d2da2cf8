"""OCI images written from files, without Docker: the pause image, a busybox image, modelward's.

No Docker engine, no Docker Hub and no registry.k8s.io are assumed. An image here is what a
registry stores: gzipped tar layers, a JSON config and a manifest naming them by digest. They
are written directly and pushed with the registry HTTP API (``registry.RegistryClient``), or
written as an OCI image layout folder (``make image``).

Builds are reproducible: every tar entry has mtime 0 (or ``SOURCE_DATE_EPOCH``), fixed owners
and sorted names, gzip headers carry no time or name, JSON is written with sorted keys, and
Python bytecode is hash-based (not timestamp-based). Building twice gives the same digest.

    pause_image()       Kubernetes' own build/pause/linux/pause.c, compiled with gcc -static
    busybox_image()     Debian's busybox-static with its applet links
    modelward_image()   what operator/Dockerfile describes: Debian 12's Python 3.11 and the
                        libraries ``ldd`` names, a /venv with modelward and its runtime
                        dependencies, non-root user 65532, ``python -m modelward``
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath

from modelward_dev.binaries import K8S_VERSION, cache_dir
from modelward_dev.registry import RegistryClient, manifest_json

__all__ = [
    "BUSYBOX",
    "IMAGE_CONFIG_MEDIA_TYPE",
    "LAYER_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "BuiltImage",
    "ImageBuildError",
    "ImageConfig",
    "Layer",
    "build_image",
    "busybox_image",
    "modelward_image",
    "parse_reference",
    "pause_image",
    "verifier_image",
    "write_oci_layout",
]

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
IMAGE_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
BUSYBOX = Path("/bin/busybox")
HOST_PYTHON = Path("/usr/bin/python3.11")
PYTHON_VERSION = "3.11"
#: The user of distroless' "nonroot" images; the chart and the verifier run as it.
NONROOT = 65532
_REPO_ROOT = Path(__file__).resolve().parents[2]
_INSTALL_HINT = "Install it with hack/install-system-deps.sh."

#: Parts of the standard library a server never imports: tests, GUIs, build files, installers.
_STDLIB_EXCLUDED = frozenset(
    {
        "test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "ensurepip",
        "lib2to3",
        "pydoc_data",
        "venv",
        "__pycache__",
        f"config-{PYTHON_VERSION}-x86_64-linux-gnu",
        "EXTERNALLY-MANAGED",
    }
)


class ImageBuildError(RuntimeError):
    """An input of an image is missing or unusable; the message says what to install or fix."""


def _epoch() -> int:
    """Timestamp of every file and of the image: ``SOURCE_DATE_EPOCH`` or 0."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "0")
    try:
        return int(value)
    except ValueError:
        raise ImageBuildError(f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds") from None


@dataclass
class _Entry:
    kind: str  # "file", "dir" or "symlink"
    mode: int
    uid: int
    gid: int
    data: bytes = b""
    source: Path | None = None
    target: str = ""


class Layer:
    """The files of one layer, keyed by absolute path in the image; parents are implied.

    Entries added later replace earlier ones with the same path. ``tar_gz()`` is deterministic.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def paths(self) -> list[str]:
        return sorted(self._entries)

    def add_dir(self, path: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self._entries[_clean(path)] = _Entry("dir", mode, uid, gid)

    def add_file(
        self, path: str, data: bytes, *, mode: int = 0o644, uid: int = 0, gid: int = 0
    ) -> None:
        self._entries[_clean(path)] = _Entry("file", mode, uid, gid, data=data)

    def add_host_file(self, path: str, source: Path, *, mode: int | None = None) -> None:
        """A host file's content (read when the layer is written), its permission bits kept."""
        info = source.stat()
        file_mode = stat.S_IMODE(info.st_mode) if mode is None else mode
        self._entries[_clean(path)] = _Entry("file", file_mode, 0, 0, source=source)

    def add_symlink(self, path: str, target: str) -> None:
        self._entries[_clean(path)] = _Entry("symlink", 0o777, 0, 0, target=target)

    def has(self, path: str) -> bool:
        return _clean(path) in self._entries

    def add_host_path(self, path: str, source: Path) -> None:
        """A host file or symlink at ``path``, symlinks recreated and their targets followed.

        Shared libraries are found through chains such as ``/lib/x86_64-linux-gnu/libz.so.1 ->
        libz.so.1.2.13``; the image needs every link of the chain, as the loader walks it.
        Paths under /bin, /lib, /lib64 and /sbin are stored under /usr (Debian 12's merged
        /usr: in the image those four are symlinks, so nothing may be stored beneath them).
        """
        seen: set[str] = set()
        current_path, current = _merged_usr(path), source
        while current.is_symlink() and current_path not in seen:
            seen.add(current_path)
            target = os.readlink(current)
            self.add_symlink(current_path, target)
            current_path = _merged_usr(
                os.path.normpath(str(PurePosixPath(current_path).parent / target))
            )
            current = current.parent / target
        if current.is_file():
            self.add_host_file(current_path, current.resolve())

    def tar_gz(self) -> tuple[bytes, str]:
        """The layer as gzipped tar, and the digest of the uncompressed tar (its diff ID)."""
        entries = dict(self._entries)
        for path in list(entries):  # implied parent folders
            parent = PurePosixPath(path).parent
            while str(parent) not in (".", "/", ""):
                existing = entries.setdefault(str(parent), _Entry("dir", 0o755, 0, 0))
                if existing.kind != "dir":
                    raise ValueError(
                        f"{path} is stored beneath {parent}, which is a {existing.kind}"
                    )
                parent = parent.parent
        epoch = _epoch()
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(entries):
                entry = entries[path]
                info = tarfile.TarInfo(path)
                info.mtime = epoch
                info.mode = entry.mode
                info.uid, info.gid = entry.uid, entry.gid
                info.uname = info.gname = ""
                if entry.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif entry.kind == "symlink":
                    info.type = tarfile.SYMTYPE
                    info.linkname = entry.target
                    tar.addfile(info)
                else:
                    data = entry.source.read_bytes() if entry.source is not None else entry.data
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        tar_bytes = raw.getvalue()
        diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
        compressed = io.BytesIO()
        # mtime=0 and no file name: gzip's header would otherwise differ from build to build.
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=6, mtime=0) as gz:
            gz.write(tar_bytes)
        return compressed.getvalue(), diff_id


_MERGED_USR = ("bin", "lib", "lib64", "sbin")


def _merged_usr(path: str) -> str:
    parts = PurePosixPath("/" + path.lstrip("/")).parts
    if len(parts) > 2 and parts[1] in _MERGED_USR:
        return str(PurePosixPath("/usr", *parts[1:]))
    return str(PurePosixPath(*parts))


def _clean(path: str) -> str:
    cleaned = os.path.normpath("/" + path).lstrip("/")
    if not cleaned or cleaned == ".":
        raise ValueError(f"{path!r} is not a path inside the image")
    return cleaned


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an image config (what a Dockerfile's ENV, USER... set)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ("PATH=/usr/local/bin:/usr/bin:/bin",)
    user: str = ""
    working_dir: str = "/"
    exposed_ports: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        config: dict[str, object] = {"Env": list(self.env), "WorkingDir": self.working_dir}
        if self.entrypoint:
            config["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            config["Cmd"] = list(self.cmd)
        if self.user:
            config["User"] = self.user
        if self.exposed_ports:
            config["ExposedPorts"] = {port: {} for port in self.exposed_ports}
        if self.labels:
            config["Labels"] = dict(self.labels)
        return config


@dataclass(frozen=True)
class BuiltImage:
    """An image ready to push: its blobs by digest, config and manifest bytes, and digest."""

    name: str
    manifest: bytes
    config: bytes
    blobs: Mapping[str, bytes]

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()

    @property
    def size(self) -> int:
        """Bytes of all compressed layers (what a pull transfers)."""
        return sum(len(blob) for blob in self.blobs.values())

    def push(self, client: RegistryClient, repository: str, tag: str) -> str:
        """Push blobs then the manifest under ``tag``; returns the manifest digest."""
        for blob in self.blobs.values():
            client.push_blob(repository, blob)
        return client.push_manifest(repository, tag, self.manifest, MANIFEST_MEDIA_TYPE)


def build_image(
    name: str,
    layers: Sequence[Layer],
    config: ImageConfig,
    *,
    created: int | None = None,
    annotations: Mapping[str, str] | None = None,
) -> BuiltImage:
    """Assemble layers and config into an OCI image (linux/amd64); ``created`` (POSIX seconds,
    default ``SOURCE_DATE_EPOCH``) and manifest ``annotations`` let tests age or label it."""
    blobs: dict[str, bytes] = {}
    descriptors: list[dict[str, object]] = []
    diff_ids: list[str] = []
    for layer in layers:
        data, diff_id = layer.tar_gz()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        diff_ids.append(diff_id)
        descriptors.append({"mediaType": LAYER_MEDIA_TYPE, "digest": digest, "size": len(data)})
    created = _iso(_epoch() if created is None else created)
    config_bytes = manifest_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": created,
            "config": config.as_json(),
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [
                {"created": created, "created_by": f"modelward_dev.images: {name} layer {i}"}
                for i in range(len(layers))
            ],
        }
    )
    config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    blobs[config_digest] = config_bytes
    manifest = manifest_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": IMAGE_CONFIG_MEDIA_TYPE,
                "digest": config_digest,
                "size": len(config_bytes),
            },
            "layers": descriptors,
            **({"annotations": dict(annotations)} if annotations else {}),
        }
    )
    return BuiltImage(name=name, manifest=manifest, config=config_bytes, blobs=blobs)


def _iso(epoch: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_oci_layout(image: BuiltImage, directory: Path, *, ref_name: str) -> None:
    """An OCI image layout folder (``oci-layout``, ``index.json``, ``blobs/sha256/...``).

    The format ``skopeo copy oci:DIR docker://...`` and ``crane push`` read, so a user can push
    the image with their own tools.
    """
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for digest, data in {**image.blobs, image.digest: image.manifest}.items():
        (blobs / digest.split(":", 1)[1]).write_bytes(data)
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": image.digest,
                "size": len(image.manifest),
                "annotations": {"org.opencontainers.image.ref.name": ref_name},
            }
        ],
    }
    (directory / "index.json").write_bytes(manifest_json(index))


_REFERENCE = re.compile(
    r"^(?P<host>[^/]+)/(?P<repository>[a-z0-9._/-]+?)(?::(?P<tag>[\w][\w.-]{0,127}))?$"
)


def parse_reference(reference: str) -> tuple[str, str, str]:
    """``host[:port]/repo[:tag]`` → (host, repository, tag); tag ``latest`` when absent.

    Raises:
        ValueError: the reference has no registry host or is malformed (the message shows the
            expected form).
    """
    match = _REFERENCE.match(reference)
    if match is None or (
        "." not in match["host"] and ":" not in match["host"] and match["host"] != "localhost"
    ):
        raise ValueError(
            f"{reference!r} is not an image reference with a registry host; expected "
            "HOST[:PORT]/REPOSITORY[:TAG], e.g. 127.0.0.1:5000/modelward:dev"
        )
    return match["host"], match["repository"], match["tag"] or "latest"


# --- the images ---------------------------------------------------------------------------------


def _run(args: Sequence[str], *, what: str) -> str:
    try:
        result = subprocess.run(list(args), capture_output=True, text=True, check=False)
    except FileNotFoundError as error:
        raise ImageBuildError(
            f"{what}: {args[0]} is not installed ({error}). {_INSTALL_HINT}"
        ) from None
    if result.returncode != 0:
        raise ImageBuildError(
            f"{what} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}"
        )
    return result.stdout


def kubernetes_source_dir(version: str = K8S_VERSION) -> Path:
    """The k8s.io/kubernetes module in Go's module cache (downloaded if missing)."""
    out = _run(
        ["go", "mod", "download", "-json", f"k8s.io/kubernetes@v{version}"],
        what=f"finding the k8s.io/kubernetes v{version} sources",
    )
    return Path(json.loads(out)["Dir"])


def pause_binary(version: str = K8S_VERSION) -> Path:
    """Kubernetes' pause program, compiled from its C source with ``gcc -static`` (cached)."""
    out_dir = cache_dir() / "bin" / f"pause-v{version}"
    binary = out_dir / "pause"
    if binary.is_file():
        return binary
    source = kubernetes_source_dir(version) / "build" / "pause" / "linux" / "pause.c"
    if not source.is_file():
        raise ImageBuildError(f"{source} is missing from the k8s.io/kubernetes v{version} module")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "pause.tmp"
    # The flags of build/pause/Makefile; VERSION without the git describe part.
    _run(
        [
            "gcc",
            "-Os",
            "-Wall",
            "-Werror",
            "-static",
            f"-DVERSION=v{version}",
            "-o",
            str(tmp),
            str(source),
        ],
        what="compiling pause.c (needs gcc and the static libc, Debian package libc6-dev)",
    )
    _run(["strip", str(tmp)], what="stripping pause")
    tmp.replace(binary)
    return binary


def pause_image(version: str = K8S_VERSION) -> BuiltImage:
    """The pod sandbox image, as build/pause/Dockerfile makes it: /pause, user 65535."""
    layer = Layer()
    layer.add_host_file("/pause", pause_binary(version), mode=0o755)
    return build_image(
        "pause", [layer], ImageConfig(entrypoint=("/pause",), user="65535:65535", env=())
    )


def busybox_image() -> BuiltImage:
    """Debian's static busybox with a link per applet, a /tmp, and a nonroot user."""
    if not BUSYBOX.is_file():
        raise ImageBuildError(f"{BUSYBOX} is missing. {_INSTALL_HINT} (package busybox-static)")
    layer = Layer()
    layer.add_host_file("/bin/busybox", BUSYBOX, mode=0o755)
    applets = _run([str(BUSYBOX), "--list-full"], what="listing busybox applets").split()
    for applet in applets:
        if applet != "bin/busybox":
            target = os.path.relpath("/bin/busybox", str(PurePosixPath("/" + applet).parent))
            layer.add_symlink(applet, target)
    _add_users(layer)
    layer.add_dir("/tmp", mode=0o1777)
    return build_image("busybox", [layer], ImageConfig(cmd=("sh",)))


def _add_users(layer: Layer) -> None:
    layer.add_file(
        "/etc/passwd",
        f"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n".encode(),
    )
    layer.add_file("/etc/group", f"root:x:0:\nnonroot:x:{NONROOT}:\n".encode())
    layer.add_dir("/home/nonroot", mode=0o700, uid=NONROOT, gid=NONROOT)


# -- modelward's image --


def _runtime_distributions(
    project: Path, requirements: Sequence[str] | None = None
) -> list[metadata.Distribution]:
    """modelward's runtime dependencies and theirs, as installed in this interpreter's venv.

    Read from ``[project].dependencies`` of pyproject.toml (or ``requirements``) and each
    distribution's metadata (markers evaluated, extras ignored): exactly what ``pip install .``
    would bring, no test tools. Each must be the version operator/requirements.lock pins, so
    that the image holds what the lock file (and the SBOM made from it) says.
    """
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    if requirements is None:
        requirements = pyproject["project"]["dependencies"]
    pending = [Requirement(r) for r in requirements]
    found: dict[str, metadata.Distribution] = {}
    while pending:
        requirement = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        key = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if key in found:
            continue
        try:
            distribution = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise ImageBuildError(
                f"{requirement.name} (needed by modelward) is not installed in {sys.prefix}; "
                "run `make venv` (pip install -e '.[test]') first"
            ) from None
        found[key] = distribution
        pending.extend(Requirement(r) for r in distribution.requires or [])
    locked = locked_versions(project / LOCK_FILE)
    for key, distribution in found.items():
        if key != "modelward" and locked.get(key) != distribution.version:
            raise ImageBuildError(
                f"{distribution.metadata['Name']} {distribution.version} is installed but "
                f"{LOCK_FILE} pins {locked.get(key, 'nothing')}: run `pip install "
                f"--require-hashes -r {LOCK_FILE}` (or `make lock` after changing pyproject.toml)"
            )
    return [found[k] for k in sorted(found)]


#: The runtime dependencies, pinned with hashes (``make lock``); the Dockerfile installs them.
LOCK_FILE = "operator/requirements.lock"
#: What the verifier image's ``modelward verify-pod`` imports beyond the standard library.
VERIFIER_REQUIREMENTS = ("cryptography", "blake3")


def locked_versions(lock: Path) -> dict[str, str]:
    """``{normalised name: version}`` of a pip requirements file with ``name==version`` pins."""
    try:
        text = lock.read_text()
    except OSError as exc:
        raise ImageBuildError(f"{lock}: {exc.strerror}; run `make lock`") from None
    pins = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def _site_packages_files(distribution: metadata.Distribution) -> Iterable[tuple[str, Path]]:
    """(path relative to site-packages, host file) of a distribution, bytecode left out."""
    base = Path(str(distribution.locate_file("")))
    for file in distribution.files or []:
        relative = str(file)
        if relative.startswith("..") or "__pycache__" in file.parts or relative.endswith(".pyc"):
            continue
        if relative.endswith(".dist-info/RECORD") or relative.endswith(".dist-info/INSTALLER"):
            continue  # pip's bookkeeping; RECORD would list the .pyc files we compile anew
        host = base / relative
        if host.is_file():
            yield relative, host


def _shared_libraries(elf_files: Iterable[Path]) -> dict[str, Path]:
    """Every library ``ldd`` lists for these files (and the loader), by the path it names."""
    libraries: dict[str, Path] = {}
    for elf in elf_files:
        result = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, check=False)
        for line in result.stdout.splitlines():
            match = re.search(r"(/\S+)\s+\(0x", line)
            if match and "=>" not in line:  # the loader: "/lib64/ld-linux-x86-64.so.2 (0x...)"
                libraries[match[1]] = Path(match[1])
                continue
            match = re.search(r"=>\s+(/\S+)\s+\(0x", line)
            if match:
                libraries[match[1]] = Path(match[1])
            elif "not found" in line:
                raise ImageBuildError(
                    f"{elf} needs a library that is not installed: {line.strip()}"
                )
    # Where the same library is named as /lib/... and /usr/lib/... keep one (merged /usr).
    return libraries


def _compile_bytecode(sources: Mapping[str, Path], python: Path) -> dict[str, bytes]:
    """Hash-based .pyc for each (image path → host source), compiled by the image's Python.

    The image's own interpreter compiles, so the magic number matches exactly; unchecked hash
    pycs carry no timestamp, so they are reproducible and valid on a read-only filesystem
    whatever the files' mtimes. Results are cached by source hash and image path.
    """
    version = _run(
        [str(python), "-c", "import sys; print(sys.version)"], what="running Python"
    ).strip()
    cache = cache_dir() / "pyc" / hashlib.sha256(version.encode()).hexdigest()[:16]
    cache.mkdir(parents=True, exist_ok=True)
    result: dict[str, bytes] = {}
    todo: dict[str, str] = {}
    keys: dict[str, Path] = {}
    for image_path, host in sources.items():
        key = hashlib.sha256(image_path.encode() + b"\0" + host.read_bytes()).hexdigest()
        cached = cache / key[:2] / f"{key}.pyc"
        keys[image_path] = cached
        if cached.is_file():
            result[image_path] = cached.read_bytes()
        else:
            todo[image_path] = str(host)
    if todo:
        script = (
            "import json, sys, importlib.util as u, importlib._bootstrap_external as b\n"
            "jobs = json.load(sys.stdin)\n"
            "for image_path, host, out in jobs:\n"
            "    source = open(host, 'rb').read()\n"
            "    try:\n"
            "        code = compile(source, image_path, 'exec', dont_inherit=True)\n"
            "    except SyntaxError:\n"
            "        continue\n"
            "    data = b._code_to_hash_pyc(code, u.source_hash(source), False)\n"
            "    open(out, 'wb').write(data)\n"
        )
        jobs = []
        for image_path, host_name in todo.items():
            keys[image_path].parent.mkdir(parents=True, exist_ok=True)
            jobs.append((image_path, host_name, str(keys[image_path])))
        completed = subprocess.run(
            [str(python), "-I", "-c", script],
            input=json.dumps(jobs),
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise ImageBuildError(f"compiling bytecode failed: {completed.stderr.strip()[-2000:]}")
        for image_path in todo:
            if keys[image_path].is_file():
                result[image_path] = keys[image_path].read_bytes()
    return result


def _pyc_path(image_path: str) -> str:
    path = PurePosixPath(image_path)
    tag = f"cpython-{PYTHON_VERSION.replace('.', '')}"
    return str(path.parent / "__pycache__" / f"{path.stem}.{tag}.pyc")


def verifier_image(project: Path = _REPO_ROOT, *, python: Path = HOST_PYTHON) -> BuiltImage:
    """The slim verifier image (operator/Dockerfile's ``verifier`` target): the same runtime
    layer, but /venv holds only modelward and what ``verify-pod`` imports (cryptography,
    blake3 and their dependencies): no Kubernetes client, no web server, no YAML parser."""
    return modelward_image(
        project, python=python, requirements=VERIFIER_REQUIREMENTS, name="modelward-verifier"
    )


def modelward_image(
    project: Path = _REPO_ROOT,
    *,
    python: Path = HOST_PYTHON,
    requirements: Sequence[str] | None = None,
    name: str = "modelward",
) -> BuiltImage:
    """modelward's image with the contents operator/Dockerfile describes, built from files.

    Layer 1 (runtime): Debian 12's /usr/bin/python3.11, its standard library (tests, GUI and
    build files left out), every shared library ``ldd`` names for the interpreter and all
    extension modules, CA certificates, /etc/passwd with the nonroot user, /tmp.
    Layer 2 (/venv): modelward from ``project`` and its runtime dependencies (from the running
    venv), each with bytecode; /venv/bin/python links to /usr/bin/python3.11, as in the
    Dockerfile's build stage. Entrypoint ``python -m modelward``, command ``run``, user 65532.
    """
    if not python.is_file():
        raise ImageBuildError(
            f"{python} is missing: the image is built from Debian 12's Python {PYTHON_VERSION}"
            " (package python3.11)"
        )
    if sys.version_info[:2] != (3, 11):
        raise ImageBuildError(
            f"run the build with a Python {PYTHON_VERSION} venv (this is "
            f"{sys.version.split()[0]}): the dependencies' compiled extensions must match "
            "the image's interpreter"
        )
    stdlib = Path(f"/usr/lib/python{PYTHON_VERSION}")
    site = f"/venv/lib/python{PYTHON_VERSION}/site-packages"
    runtime, venv = Layer(), Layer()
    sources: dict[str, Path] = {}
    elf_files: list[Path] = [python]

    runtime.add_symlink("/bin", "usr/bin")
    runtime.add_symlink("/lib", "usr/lib")
    runtime.add_symlink("/lib64", "usr/lib64")
    runtime.add_symlink("/sbin", "usr/sbin")
    runtime.add_host_file(f"/usr/bin/python{PYTHON_VERSION}", python)
    runtime.add_symlink("/usr/bin/python3", f"python{PYTHON_VERSION}")
    for host in sorted(stdlib.rglob("*")):
        relative = host.relative_to(stdlib)
        if relative.parts[0] in _STDLIB_EXCLUDED or "__pycache__" in relative.parts:
            continue
        if any(part in ("test", "tests", "idle_test") for part in relative.parts):
            continue
        image_path = f"{stdlib}/{relative}"
        if host.is_symlink():
            runtime.add_symlink(image_path, os.readlink(host))
        elif host.is_file():
            runtime.add_host_file(image_path, host)
            if host.suffix == ".py":
                sources[image_path] = host
            elif host.suffix == ".so":
                elf_files.append(host)
    certificates = Path("/etc/ssl/certs/ca-certificates.crt")
    if certificates.is_file():
        runtime.add_host_file(str(certificates), certificates)
    _add_users(runtime)
    runtime.add_dir("/tmp", mode=0o1777)

    for distribution in _runtime_distributions(project, requirements):
        if distribution.metadata["Name"].lower() == "modelward":
            continue  # the editable install points at a checkout; copied from `project` below
        for site_relative, host in _site_packages_files(distribution):
            image_path = f"{site}/{site_relative}"
            venv.add_host_file(image_path, host)
            if host.suffix == ".py":
                sources[image_path] = host
            elif ".so" in host.name:
                elf_files.append(host)
    package = project / "operator" / "modelward"
    for host in sorted(package.rglob("*")):
        if "__pycache__" in host.parts or not host.is_file() or host.suffix == ".pyc":
            continue
        image_path = f"{site}/modelward/{host.relative_to(package)}"
        venv.add_host_file(image_path, host, mode=0o644)
        if host.suffix == ".py":
            sources[image_path] = host
    version = tomllib.loads((project / "pyproject.toml").read_text())["project"]["version"]
    dist_info = f"{site}/modelward-{version}.dist-info"
    venv.add_file(
        f"{dist_info}/METADATA",
        f"Metadata-Version: 2.1\nName: modelward\nVersion: {version}\n".encode(),
    )
    venv.add_file(
        f"{dist_info}/entry_points.txt", b"[console_scripts]\nmodelward = modelward.cli:main\n"
    )
    venv.add_file(
        "/venv/pyvenv.cfg",
        b"home = /usr/bin\ninclude-system-site-packages = false\n"
        + f"version = {PYTHON_VERSION}\n".encode(),
    )
    venv.add_symlink("/venv/bin/python", f"/usr/bin/python{PYTHON_VERSION}")
    venv.add_symlink("/venv/bin/python3", "python")
    venv.add_file(
        "/venv/bin/modelward",
        b"#!/venv/bin/python\nimport sys\nfrom modelward.cli import main\nsys.exit(main())\n",
        mode=0o755,
    )

    for name, host in _shared_libraries(elf_files).items():
        runtime.add_host_path(name, host)

    for image_path, data in _compile_bytecode(sources, python).items():
        layer = venv if image_path.startswith("/venv/") else runtime
        layer.add_file(_pyc_path(image_path), data)

    config = ImageConfig(
        entrypoint=("python", "-m", "modelward"),
        cmd=("run",),
        env=(
            "PATH=/venv/bin:/usr/local/bin:/usr/bin:/bin",
            "PYTHONDONTWRITEBYTECODE=1",
            "PYTHONUNBUFFERED=1",
        ),
        user=f"{NONROOT}:{NONROOT}",
        exposed_ports=("8443/tcp", "8080/tcp"),
        labels={
            "org.opencontainers.image.title": name,
            "org.opencontainers.image.description": (
                "Admission controller and operator protecting AI model-serving deployments "
                "(AIUC-1 B008)"
            ),
            "org.opencontainers.image.licenses": "Apache-2.0",
            "org.opencontainers.image.version": version,
        },
    )
    return build_image(name, [runtime, venv], config)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m modelward_dev.images modelward [--output DIR] [--push REF]``: ``make image``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m modelward_dev.images",
        description="Build an image from files (no Docker), write it as an OCI layout, push it.",
    )
    parser.add_argument("image", choices=("modelward", "verifier", "busybox", "pause"))
    parser.add_argument("--output", type=Path, help="write an OCI image layout folder here")
    parser.add_argument("--push", metavar="HOST[:PORT]/REPO[:TAG]", help="push to this registry")
    parser.add_argument("--insecure", action="store_true", help="the registry speaks plain HTTP")
    parser.add_argument("--ca-cert", type=Path, help="CA that signed the registry's certificate")
    args = parser.parse_args(argv)
    builders = {
        "modelward": modelward_image,
        "verifier": verifier_image,
        "busybox": busybox_image,
        "pause": pause_image,
    }
    try:
        image = builders[args.image]()
        print(f"{args.image}: {image.digest} ({image.size / 1e6:.1f} MB compressed)")
        if args.output:
            tag = parse_reference(args.push)[2] if args.push else "latest"
            write_oci_layout(image, args.output, ref_name=tag)
            print(f"wrote OCI layout {args.output}")
        if args.push:
            host, repository, tag = parse_reference(args.push)
            credentials = None
            user, password = os.environ.get("REGISTRY_USER"), os.environ.get("REGISTRY_PASSWORD")
            if user and password:
                from modelward_dev.registry import Credentials

                credentials = Credentials(user, password)
            scheme = "http" if args.insecure else "https"
            client = RegistryClient(
                f"{scheme}://{host}", credentials=credentials, ca_path=args.ca_cert
            )
            digest = image.push(client, repository, tag)
            print(f"pushed {host}/{repository}:{tag}@{digest}")
    except (ImageBuildError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
