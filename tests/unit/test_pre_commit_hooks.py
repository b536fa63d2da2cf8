"""`.pre-commit-hooks.yaml`: the hooks run by pre-commit itself on a throw-away git repository.

The `*-system` hooks are tested offline (pip may not reach an index: nothing is installed);
the `python` variant, which pre-commit installs from this repository with its dependencies
from PyPI, is tested once (slow: about two minutes on 2 cores).
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "manifests" / "examples"
BIN = Path(sys.executable).parent
PAYLOAD = b"cposix\nsystem\n(S'id'\ntR."


def _pre_commit() -> str:
    path = shutil.which("pre-commit", path=str(BIN)) or shutil.which("pre-commit")
    assert path, "pre-commit is not installed: pip install -e '.[test]'"
    return path


def _env(home: Path, *, offline: bool) -> dict[str, str]:
    env = {
        **os.environ,
        "PATH": os.pathsep.join((str(BIN), os.environ.get("PATH", ""))),
        "PYTHONPATH": os.pathsep.join(sys.path),  # the modelward under test, not another
        "PRE_COMMIT_HOME": str(home),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    if offline:
        env["PIP_NO_INDEX"] = "1"
    return env


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, timeout=60)


def _repo(path: Path, files: dict[str, bytes]) -> Path:
    path.mkdir()
    _git(path, "init", "-q")
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    _git(path, "add", "-A")
    _git(path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "x")
    return path


def _run(repo: Path, env: dict[str, str], *args: str, timeout: float = 120) -> tuple[int, str]:
    done = subprocess.run(
        [_pre_commit(), *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_the_manifest_is_valid_for_pre_commit(tmp_path: Path) -> None:
    code, out = _run(
        ROOT,
        _env(tmp_path, offline=True),
        "validate-manifest",
        str(ROOT / ".pre-commit-hooks.yaml"),
    )
    assert code == 0, out
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {
        "modelward-check",
        "modelward-scan",
        "modelward-check-system",
        "modelward-scan-system",
    }


def test_scan_hook_with_try_repo_offline(tmp_path: Path) -> None:
    env = _env(tmp_path / "home", offline=True)
    models = {"models/ok.pkl": pickle.dumps({"weights": [1.0, 2.0]})}
    clean = _repo(tmp_path / "clean", models)
    code, out = _run(clean, env, "try-repo", str(ROOT), "modelward-scan-system", "--all-files")
    assert code == 0 and "modelward scan" in out and "Passed" in out, out
    bad = _repo(tmp_path / "bad", {**models, "models/evil.pkl": PAYLOAD})
    code, out = _run(bad, env, "try-repo", str(ROOT), "modelward-scan-system", "--all-files")
    assert code == 1 and "Failed" in out and "posix.system" in out and "evil.pkl" in out, out


def _manifests(bad: bool) -> dict[str, bytes]:
    workloads = EXAMPLES / "workloads"
    files = {
        f"policies/{p.name}": p.read_bytes() for p in sorted((EXAMPLES / "policies").iterdir())
    }
    files["k8s/00-namespace.yaml"] = (workloads / "00-namespace.yaml").read_bytes()
    files["k8s/good.yaml"] = (workloads / "good-deployment.yaml").read_bytes()
    if bad:
        files["k8s/bad.yaml"] = (workloads / "bad-deployment.yaml").read_bytes()
    return files


def _config(hook: str) -> bytes:
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.strip()
    config = {
        "repos": [
            {
                "repo": str(ROOT),
                "rev": rev,
                "hooks": [
                    {"id": hook, "files": "^k8s/", "args": ["-f", "k8s/", "--policy", "policies/"]}
                ],
            }
        ]
    }
    return yaml.safe_dump(config).encode()


def test_check_hook_judges_the_manifests_offline(tmp_path: Path) -> None:
    """With the args docs/cli.md gives; the policies and the Namespace file are read whole,
    so a Deployment is judged with the namespace labels that select the policy."""
    env = _env(tmp_path / "home", offline=True)
    config = {".pre-commit-config.yaml": _config("modelward-check-system")}
    clean = _repo(tmp_path / "clean", {**_manifests(bad=False), **config})
    code, out = _run(clean, env, "run", "--all-files")
    assert code == 0 and "Passed" in out, out
    bad = _repo(tmp_path / "bad", {**_manifests(bad=True), **config})
    code, out = _run(bad, env, "run", "--all-files")
    assert code == 1 and "Failed" in out and "MW-SEC-001" in out and "llm-bad" in out, out


@pytest.mark.slow
def test_python_scan_hook_installs_from_the_repository(tmp_path: Path) -> None:
    """The `language: python` hook as other repositories use it: pre-commit builds its own
    virtualenv with `pip install .` of this repository, then runs the installed command."""
    env = _env(tmp_path / "home", offline=False)
    env.pop("PYTHONPATH")  # the hook must run what pre-commit installed, nothing else
    bad = _repo(tmp_path / "bad", {"evil.pkl": PAYLOAD})
    code, out = _run(bad, env, "try-repo", str(ROOT), "modelward-scan", "--all-files", timeout=580)
    assert code == 1 and "posix.system" in out and "Installing environment" in out, out
