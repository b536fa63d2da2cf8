"""Finding the control-plane binaries: KUBEBUILDER_ASSETS, the cache layout, clear failures.

Nothing here builds anything: builds are replaced by tiny shell scripts.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from modelward_dev.binaries import (
    ETCD_VERSION,
    HELM_VERSION,
    K8S_VERSION,
    BinariesUnavailableError,
    build_script_path,
    expected_binaries,
    find_binaries,
    missing_binaries,
)


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _populate_cache(cache: Path) -> None:
    bin_root = cache / "bin"
    _executable(bin_root / f"kubernetes-v{K8S_VERSION}" / "kube-apiserver")
    _executable(bin_root / f"kubernetes-v{K8S_VERSION}" / "kubectl")
    _executable(bin_root / f"etcd-v{ETCD_VERSION}" / "etcd")
    _executable(bin_root / f"helm-v{HELM_VERSION}" / "helm")


def _script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fake-build.sh"
    script.write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + body)
    return script


def _never_run(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "build-ran"
    return _script(tmp_path, f"touch {marker}\nexit 1\n"), marker


def test_versions_match_the_build_script_defaults() -> None:
    script = build_script_path().read_text()
    defaults = dict(re.findall(r'^(\w+_VERSION)="\$\{\1:-([0-9.]+)\}"', script, re.MULTILINE))
    assert defaults == {
        "K8S_VERSION": K8S_VERSION,
        "ETCD_VERSION": ETCD_VERSION,
        "HELM_VERSION": HELM_VERSION,
    }


def test_cache_layout_follows_modelward_cache(tmp_path: Path) -> None:
    binaries = expected_binaries(environ={"MODELWARD_CACHE": str(tmp_path)})
    assert binaries.kube_apiserver == tmp_path / f"bin/kubernetes-v{K8S_VERSION}/kube-apiserver"
    assert binaries.kubectl == tmp_path / f"bin/kubernetes-v{K8S_VERSION}/kubectl"
    assert binaries.etcd == tmp_path / f"bin/etcd-v{ETCD_VERSION}/etcd"
    assert binaries.helm == tmp_path / f"bin/helm-v{HELM_VERSION}/helm"


def test_default_cache_is_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    binaries = expected_binaries(environ={})
    assert binaries.etcd == tmp_path / f".cache/modelward/bin/etcd-v{ETCD_VERSION}/etcd"


def test_cached_binaries_are_found_without_building(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _populate_cache(cache)
    script, marker = _never_run(tmp_path)
    binaries = find_binaries(environ={"MODELWARD_CACHE": str(cache)}, build_script=script)
    assert binaries == expected_binaries(environ={"MODELWARD_CACHE": str(cache)})
    assert not marker.exists()


def test_kubebuilder_assets_take_precedence(tmp_path: Path) -> None:
    cache, assets = tmp_path / "cache", tmp_path / "assets"
    _populate_cache(cache)
    for name in ("kube-apiserver", "etcd", "kubectl"):
        _executable(assets / name)
    script, marker = _never_run(tmp_path)
    env = {"MODELWARD_CACHE": str(cache), "KUBEBUILDER_ASSETS": str(assets)}
    binaries = find_binaries(environ=env, build_script=script)
    assert binaries.kube_apiserver == assets.resolve() / "kube-apiserver"
    assert binaries.etcd == assets.resolve() / "etcd"
    assert binaries.kubectl == assets.resolve() / "kubectl"
    # envtest's assets have no helm: it still comes from the cache ...
    assert binaries.helm == cache / f"bin/helm-v{HELM_VERSION}/helm"
    # ... unless the folder has one.
    _executable(assets / "helm")
    assert find_binaries(environ=env, build_script=script).helm == assets.resolve() / "helm"
    assert not marker.exists()


def test_incomplete_kubebuilder_assets_fail_without_building(tmp_path: Path) -> None:
    assets = tmp_path / "assets"
    _executable(assets / "etcd")
    script, marker = _never_run(tmp_path)
    env = {"MODELWARD_CACHE": str(tmp_path / "cache"), "KUBEBUILDER_ASSETS": str(assets)}
    with pytest.raises(BinariesUnavailableError) as error:
        find_binaries(environ=env, build_script=script)
    message = str(error.value)
    assert f"KUBEBUILDER_ASSETS={assets}" in message
    assert "kube-apiserver" in message and "kubectl" in message
    assert "etcd," not in message  # etcd is there; only the missing ones are named
    assert not marker.exists()


def test_missing_binary_without_build_says_how_to_get_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _populate_cache(cache)
    etcd = cache / f"bin/etcd-v{ETCD_VERSION}/etcd"
    etcd.unlink()
    script, marker = _never_run(tmp_path)
    with pytest.raises(BinariesUnavailableError) as error:
        find_binaries(environ={"MODELWARD_CACHE": str(cache)}, build=False, build_script=script)
    message = str(error.value)
    assert f"etcd at {etcd}" in message
    assert "kube-apiserver at" not in message
    assert str(script) in message
    assert "KUBEBUILDER_ASSETS" in message
    assert not marker.exists()


def test_a_file_that_is_not_executable_counts_as_missing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _populate_cache(cache)
    kubectl = cache / f"bin/kubernetes-v{K8S_VERSION}/kubectl"
    kubectl.chmod(0o644)
    binaries = expected_binaries(environ={"MODELWARD_CACHE": str(cache)})
    assert missing_binaries(binaries) == {"kubectl": kubectl}


def test_missing_binaries_are_built_with_pinned_versions(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    script = _script(
        tmp_path,
        """
echo "[fake-build] building k8s $K8S_VERSION, etcd $ETCD_VERSION, helm $HELM_VERSION" >&2
for f in "kubernetes-v$K8S_VERSION/kube-apiserver" "kubernetes-v$K8S_VERSION/kubectl" \\
         "etcd-v$ETCD_VERSION/etcd" "helm-v$HELM_VERSION/helm"; do
  mkdir -p "$(dirname "$MODELWARD_CACHE/bin/$f")"
  printf '#!/bin/sh\\n' > "$MODELWARD_CACHE/bin/$f"; chmod +x "$MODELWARD_CACHE/bin/$f"
done
""",
    )
    # A stray K8S_VERSION in the environment must not send the build to another folder.
    env = {"MODELWARD_CACHE": str(cache), "K8S_VERSION": "9.9.9", "PATH": "/usr/bin:/bin"}
    binaries = find_binaries(environ=env, build_script=script)
    assert missing_binaries(binaries) == {}
    progress = capfd.readouterr().err
    assert f"building k8s {K8S_VERSION}, etcd {ETCD_VERSION}, helm {HELM_VERSION}" in progress


def test_failed_build_quotes_its_output(tmp_path: Path) -> None:
    script = _script(tmp_path, 'echo "[fake-build] error: Go is not installed" >&2\nexit 3\n')
    env = {"MODELWARD_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    with pytest.raises(BinariesUnavailableError) as error:
        find_binaries(environ=env, build_script=script)
    message = str(error.value)
    assert "exit code 3" in message
    assert "[fake-build] error: Go is not installed" in message
    assert "KUBEBUILDER_ASSETS" in message


def test_build_that_produces_nothing_is_an_error(tmp_path: Path) -> None:
    script = _script(tmp_path, "exit 0\n")
    env = {"MODELWARD_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    with pytest.raises(BinariesUnavailableError, match="finished without producing them"):
        find_binaries(environ=env, build_script=script)


def test_missing_build_script_is_reported(tmp_path: Path) -> None:
    env = {"MODELWARD_CACHE": str(tmp_path / "cache")}
    with pytest.raises(BinariesUnavailableError, match="does not exist"):
        find_binaries(environ=env, build_script=tmp_path / "nope.sh")
