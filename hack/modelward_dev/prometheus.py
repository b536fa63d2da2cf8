"""A real Prometheus server on loopback, scraping a local modelward, for end-to-end tests.

The chart's alerts and Grafana dashboard are only believable when a real Prometheus has
scraped a real modelward and evaluated them. This starts Debian's ``prometheus`` (installed by
``hack/install-system-deps.sh``) as a plain process: a free port on 127.0.0.1, its own
temporary folder for the configuration and the TSDB, and the same cleanup guarantees as the
control plane (stopped at exit, on signals, and with the test runner if it is killed).

    with PrometheusProcess(targets=[ScrapeTarget(job="modelward", address="127.0.0.1:8080")],
                           rule_files=[rules]) as prometheus:
        prometheus.wait_for_targets_up()
        prometheus.query("sum(modelward_ready)")

Also here: the Grafana-variable substitution that turns the dashboard's panel queries into
plain PromQL, so tests can send every panel's query to Prometheus.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelward_dev.controlplane import (
    ManagedProcess,
    free_ports,
    loopback_opener,
    register_cleanup,
    unregister_cleanup,
)
from modelward_dev.lifecycle import StartStop

__all__ = [
    "GRAFANA_BUILTINS",
    "PrometheusError",
    "PrometheusProcess",
    "ScrapeTarget",
    "dashboard_queries",
    "find_prometheus",
    "grafana_expr",
]

#: Values for Grafana's built-in variables when a panel query is sent to Prometheus directly.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
_PORT_RETRIES = 3


class PrometheusError(RuntimeError):
    """Prometheus is missing, did not start, or refused a query; the message says which."""


def find_prometheus() -> Path:
    """The ``prometheus`` binary on PATH (Debian's package), or an error saying how to get it."""
    found = shutil.which("prometheus")
    if found is None:
        raise PrometheusError(
            "prometheus is not installed: run `make system-deps` (hack/install-system-deps.sh "
            "installs Debian's prometheus package) or put a prometheus binary on PATH"
        )
    return Path(found)


@dataclass(frozen=True)
class ScrapeTarget:
    """One static scrape target (``host:port``), with the labels Prometheus should attach.

    ``honor_labels`` keeps a scraped ``namespace`` label (modelward's violation metrics carry
    the workload's namespace) instead of renaming it; the chart's ServiceMonitor sets it too.
    """

    job: str
    address: str
    metrics_path: str = "/metrics"
    labels: Mapping[str, str] = field(default_factory=dict)
    honor_labels: bool = True


class PrometheusProcess(StartStop):
    """``prometheus`` on a free loopback port with a generated configuration.

    Attributes valid after ``start()``: ``url``, ``port``, ``work_dir``, ``log_path``.
    """

    def __init__(
        self,
        *,
        targets: Sequence[ScrapeTarget],
        rule_files: Sequence[Path] = (),
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        binary: Path | None = None,
        work_dir: Path | None = None,
        keep_work_dir: bool = False,
        startup_timeout: float = 60.0,
    ) -> None:
        self._targets = tuple(targets)
        self._rule_files = tuple(rule_files)
        self._scrape_interval = scrape_interval
        self._evaluation_interval = evaluation_interval
        self._binary = binary
        self._given_work_dir = work_dir
        self._keep_work_dir = keep_work_dir or work_dir is not None
        self._startup_timeout = startup_timeout
        self._work_dir: Path | None = None
        self._port: int | None = None
        self._process: ManagedProcess | None = None
        self._lock = threading.RLock()

    # -- lifecycle --

    def start(self) -> None:
        """Write the configuration, start Prometheus and wait until ``/-/ready`` answers.

        Raises:
            PrometheusError: the binary is missing, the configuration was refused, or the
                server was not ready in time; the message quotes its log.
        """
        with self._lock:
            if self._process is not None:
                raise RuntimeError("this Prometheus was already started")
            binary = self._binary or find_prometheus()
            if self._given_work_dir is not None:
                self._work_dir = self._given_work_dir.resolve()
                self._work_dir.mkdir(parents=True, exist_ok=True)
            else:
                self._work_dir = Path(tempfile.mkdtemp(prefix="modelward-prometheus-"))
            config = self._write_config()
            register_cleanup(self.stop)
            try:
                for attempt in range(1, _PORT_RETRIES + 1):
                    (self._port,) = free_ports(1)
                    self._process = ManagedProcess(
                        name="prometheus",
                        args=[
                            str(binary),
                            f"--config.file={config}",
                            f"--storage.tsdb.path={self.work_dir / 'data'}",
                            "--storage.tsdb.retention.time=1h",
                            f"--web.listen-address=127.0.0.1:{self._port}",
                            "--log.level=warn",
                        ],
                        log_path=self.log_path,
                        cwd=self.work_dir,
                    )
                    self._process.start()
                    if self._wait_until_ready():
                        return
                    if attempt == _PORT_RETRIES:
                        raise self._failure("prometheus could not bind a free port")
            except BaseException:
                self._keep_work_dir = True  # the error message points at the log
                self.stop()
                raise

    def stop(self) -> None:
        """Stop the server and delete its folder (unless kept). Idempotent."""
        with self._lock:
            unregister_cleanup(self.stop)
            if self._process is not None:
                self._process.stop(grace=10.0)
            if self._work_dir is not None and not self._keep_work_dir:
                shutil.rmtree(self._work_dir, ignore_errors=True)

    # -- attributes --

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            raise RuntimeError("prometheus has not been started")
        return self._work_dir

    @property
    def log_path(self) -> Path:
        return self.work_dir / "prometheus.log"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("prometheus has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        return self._process.log_tail(lines) if self._process is not None else ""

    # -- the HTTP API --

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET ``/api/v1/<path>``; returns the decoded body whatever the status (errors too)."""
        query = urllib.parse.urlencode(params)
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with loopback_opener().open(url, timeout=30.0) as response:
                body: dict[str, Any] = json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                body = json.loads(error.read() or b"{}")
        return body

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (or scalar as a one-element list).

        Raises:
            PrometheusError: Prometheus refused or failed to evaluate the expression; the
                message carries its error type and text.
        """
        body = self.api("query", query=expr)
        if body.get("status") != "success":
            raise PrometheusError(
                f"query failed ({body.get('errorType')}): {body.get('error')}\n  {expr}"
            )
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.api("targets")["data"]["activeTargets"]
        return active

    def rules(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self.api("rules")["data"]["groups"]
        return groups

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError, PrometheusError, KeyError, ValueError):
                if check():
                    return
            if self._process is not None and not self._process.running():
                raise self._failure(f"prometheus exited while waiting for {what}")
            if time.monotonic() > deadline:
                raise self._failure(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.25)

    def wait_for_targets_up(self, timeout: float = 60.0) -> None:
        """Every configured target has been scraped successfully at least once."""
        expected = len(self._targets)

        def all_up() -> bool:
            targets = self.targets()
            return len(targets) == expected and all(t["health"] == "up" for t in targets)

        self.wait_until(f"{expected} target(s) to be up", all_up, timeout)

    # -- internals --

    def _write_config(self) -> Path:
        rules_dir = self.work_dir / "rules"
        rules_dir.mkdir(exist_ok=True)
        rule_paths = []
        for index, source in enumerate(self._rule_files):
            target = rules_dir / f"{index:02d}-{source.name}"
            shutil.copyfile(source, target)
            rule_paths.append(str(target))
        config = {
            "global": {
                "scrape_interval": self._scrape_interval,
                "scrape_timeout": self._scrape_interval,
                "evaluation_interval": self._evaluation_interval,
            },
            "rule_files": rule_paths,
            "scrape_configs": [
                {
                    "job_name": target.job,
                    "metrics_path": target.metrics_path,
                    "honor_labels": target.honor_labels,
                    "static_configs": [
                        {"targets": [target.address], "labels": dict(target.labels)}
                    ],
                }
                for target in self._targets
            ],
        }
        jobs = [t.job for t in self._targets]
        if len(set(jobs)) != len(jobs):
            raise ValueError(f"job names must be unique: {jobs}")
        path = self.work_dir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _wait_until_ready(self) -> bool:
        """True when ready; False when the port was taken (retry); raises on other failures."""
        assert self._process is not None
        deadline = time.monotonic() + self._startup_timeout
        opener = loopback_opener()
        while True:
            try:
                with opener.open(f"{self.url}/-/ready", timeout=2.0) as response:
                    if response.status == 200:
                        return True
            except urllib.error.HTTPError as error:
                error.close()
            except OSError:
                pass
            if not self._process.running():
                if "address already in use" in self.log_tail(20):
                    return False
                raise self._failure(
                    f"prometheus exited with code {self._process.returncode()} at start-up"
                )
            if time.monotonic() > deadline:
                raise self._failure(f"prometheus was not ready within {self._startup_timeout:.0f}s")
            time.sleep(0.1)

    def _failure(self, what: str) -> PrometheusError:
        detail = self._process.describe_failure(40) if self._process is not None else ""
        return PrometheusError(f"{what}\n{detail}")


# --- the Grafana dashboard's queries -----------------------------------------------------------


def grafana_expr(expr: str, variables: Mapping[str, str]) -> str:
    """``expr`` with ``$name`` and ``${name}`` replaced (longest names first).

    Raises:
        ValueError: a variable is left that ``variables`` does not define.
    """
    for name in sorted(variables, key=len, reverse=True):
        value = variables[name]
        expr = expr.replace("${" + name + "}", value)
        # Split and join rather than re.sub: the value is literal text, never a pattern.
        expr = value.join(re.split(rf"\${re.escape(name)}\b", expr))
    leftover = re.findall(r"\$\{?\w+", expr)
    if leftover:
        raise ValueError(f"undefined Grafana variables {leftover} in: {expr}")
    return expr


def _panels(panels: Sequence[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def dashboard_queries(dashboard: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, refId, PromQL) for every query of every panel, variables substituted.

    A dashboard variable stands for its ``allValue`` (".*" selects everything), Grafana's
    built-ins for ``GRAFANA_BUILTINS``.
    """
    variables = dict(GRAFANA_BUILTINS)
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") == "query":
            variables[variable["name"]] = variable.get("allValue") or ".*"
    queries = []
    for panel in _panels(dashboard.get("panels") or []):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                queries.append(
                    (
                        str(panel.get("title")),
                        str(target.get("refId")),
                        grafana_expr(target["expr"], variables),
                    )
                )
    return queries
