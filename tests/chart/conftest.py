"""Rendering the Helm chart with the real helm binary, for the tests of tests/chart.

No cluster is involved: ``helm template`` and ``helm lint`` run offline (``lookup`` returns
nothing), so these tests are fast and run with the unit tests. The helm binary is the one the
control-plane harness uses (``modelward_dev.binaries``), built if it is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelward_dev.binaries import find_binaries

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "modelward"
DOCS_DIR = REPO_ROOT / "docs"


#: Hook events whose objects exist only while a hook runs (`helm test`, the post-delete
#: cleanup): kept apart from the release's objects, so the operator's RBAC and pod checks see
#: the operator's objects only (tests/chart/test_hooks.py checks the hooks').
TRANSIENT_HOOKS = ("test", "post-delete")


def _transient(obj: dict[str, Any]) -> bool:
    events = (obj.get("metadata", {}).get("annotations") or {}).get("helm.sh/hook", "")
    return any(event in TRANSIENT_HOOKS for event in events.split(","))


@dataclass(frozen=True)
class Rendered:
    """The objects ``helm template`` produced, with look-ups by kind and name; ``hooks`` holds
    the objects of the transient hooks (`helm test`, post-delete)."""

    objects: tuple[dict[str, Any], ...]
    notes: str
    hooks: tuple[dict[str, Any], ...] = ()

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o.get("kind") == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def kinds(self) -> set[str]:
        return {str(o.get("kind")) for o in self.objects}


class HelmChart:
    """``helm template`` / ``helm lint`` of charts/modelward with given values."""

    def __init__(self, helm: Path, work_dir: Path) -> None:
        self.helm = helm
        self.work_dir = work_dir
        self._count = 0

    def _values_file(self, values: Mapping[str, Any] | None) -> list[str]:
        if not values:
            return []
        self._count += 1
        path = self.work_dir / f"values-{self._count}.yaml"
        path.write_text(yaml.safe_dump(dict(values)))
        return ["-f", str(path)]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.helm), *args], capture_output=True, text=True, timeout=120, check=False
        )

    def template(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        release: str = "modelward",
        namespace: str = "modelward-system",
        show_only: str | None = None,
    ) -> Rendered:
        """Render; a failure raises with helm's message (tests of bad values use ``attempt``)."""
        result = self.attempt(values, release=release, namespace=namespace, show_only=show_only)
        assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
        everything = [o for o in yaml.safe_load_all(result.stdout) if o]
        objects = tuple(o for o in everything if not _transient(o))
        hooks = tuple(o for o in everything if _transient(o))
        notes = self.run(
            "install",
            release,
            str(CHART_DIR),
            "--dry-run=client",
            "--namespace",
            namespace,
            *self._values_file(values),
        )
        return Rendered(
            objects, notes.stdout.split("NOTES:", 1)[-1] if notes.returncode == 0 else "", hooks
        )

    def attempt(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        release: str = "modelward",
        namespace: str = "modelward-system",
        show_only: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        args = ["template", release, str(CHART_DIR), "--namespace", namespace]
        if show_only:
            args += ["--show-only", show_only]
        return self.run(*args, *self._values_file(values))

    def lint(self, values: Mapping[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
        return self.run("lint", "--strict", str(CHART_DIR), *self._values_file(values))


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    return find_binaries().helm


@pytest.fixture(scope="session")
def chart(helm_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> HelmChart:
    return HelmChart(helm_binary, tmp_path_factory.mktemp("helm-values"))


@pytest.fixture(scope="session")
def promtool() -> Iterator[Path]:
    """Debian's promtool (package prometheus); the tests fail, never skip, without it."""
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is not installed: run `make system-deps` (hack/install-system-deps.sh "
            "installs Debian's prometheus package, which ships promtool)"
        )
    yield Path(found)


def exposed_metric_names() -> dict[str, str]:
    """Every series name modelward's /metrics can expose, with its metric's type.

    prometheus_client appends ``_total`` to counters and exposes ``_bucket``, ``_sum`` and
    ``_count`` for histograms; dashboards and alerts must use those names.
    """
    from modelward.observability.metrics import Metrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names: dict[str, str] = {}
    for family in Metrics.create().registry.collect():
        for suffix in suffixes[family.type]:
            names[family.name + suffix] = family.type
    return names
