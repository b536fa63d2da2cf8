"""Property-based tests of `modelward check`'s contract, on manifests and policies mutated as a
careless or hostile author would: the exit code is always 0, 1 or 2; stderr is never a
traceback, at most one line; an object the engine cannot judge is exit 2 naming its document.

``main()`` runs in-process (with output captured) so that a few hundred examples take seconds;
the budgets are fixed and derandomized, so a run is reproducible and never flaky.
"""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from modelward.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "manifests" / "examples"
WORKLOADS = sorted((EXAMPLES / "workloads").glob("*.yaml"))
POLICIES = sorted((EXAMPLES / "policies").glob("*.yaml"))

BUDGET = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _documents(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _mutate(draw: Callable[[Any], Any], tree: Any, rounds: int) -> Any:
    """Walk to a random node and replace, delete or wrap it; ``rounds`` times."""
    tree = copy.deepcopy(tree)
    for _ in range(rounds):
        if not tree:
            break
        parent: Any = tree
        key: Any = draw(st.integers(0, len(tree) - 1))  # a document of the file
        node = tree[key]
        while isinstance(node, dict | list) and node and draw(st.integers(0, 9)) < 8:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            parent, key = node, draw(st.sampled_from(keys))
            node = node[key]
        action = draw(st.sampled_from(["replace", "delete", "wrap", "add"]))
        if action == "replace":
            parent[key] = draw(values)
        elif action == "delete":
            del parent[key]
        elif action == "wrap":
            parent[key] = [parent[key]]
        elif isinstance(node, dict):
            node[draw(st.text(max_size=8))] = draw(values)
        elif isinstance(node, list):
            node.append(draw(values))
    return tree


def run_check(
    files: dict[str, str], *, policy_files: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """``modelward check`` on the given file contents, in-process; (code, stdout, stderr)."""
    with tempfile.TemporaryDirectory() as tmp:
        manifests, policies = Path(tmp, "manifests"), Path(tmp, "policies")
        manifests.mkdir()
        policies.mkdir()
        for name, text in files.items():
            (manifests / name).write_text(text, encoding="utf-8")
        for name, text in (policy_files or {}).items():
            (policies / name).write_text(text, encoding="utf-8")
        policy_arg = str(policies) if policy_files is not None else str(EXAMPLES / "policies")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["check", "-f", str(manifests), "--policy", policy_arg, "-o", "json"])
    return code, out.getvalue(), err.getvalue()


def assert_contract(code: int, err: str) -> None:
    event(f"exit {code}")  # `pytest --hypothesis-show-statistics` shows the spread
    if "engine cannot judge" in err:
        event("caught by the engine guard, not the shape check")
    assert code in (0, 1, 2), code
    assert "Traceback" not in err and err.count("\n") <= 1, err
    assert "internal error" not in err, err
    if code == 2:
        assert err.startswith("modelward check: error: "), err


def _dump(documents: list[Any]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False)


@BUDGET
@given(data=st.data(), source=st.sampled_from(WORKLOADS), rounds=st.integers(1, 4))
def test_mutated_manifests_keep_the_exit_code_contract(
    data: st.DataObject, source: Path, rounds: int
) -> None:
    documents = _mutate(data.draw, _documents(source), rounds)
    namespace = (EXAMPLES / "workloads" / "00-namespace.yaml").read_text()
    code, _, err = run_check({"00-namespace.yaml": namespace, "m.yaml": _dump(documents)})
    assert_contract(code, err)


@BUDGET
@given(
    source=st.sampled_from(WORKLOADS),
    edits=st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(list(":-[]{}&*!|>'\"#\n\t ?%@`,"))),
        min_size=1,
        max_size=6,
    ),
)
def test_mutated_yaml_text_keeps_the_exit_code_contract(
    source: Path, edits: list[tuple[int, str]]
) -> None:
    text = source.read_text()
    for position, char in edits:
        at = position % (len(text) + 1)
        text = text[:at] + char + text[at:]
    code, _, err = run_check({"m.yaml": text})
    assert_contract(code, err)


@BUDGET
@given(data=st.data(), source=st.sampled_from(POLICIES), rounds=st.integers(1, 3))
def test_mutated_policies_keep_the_exit_code_contract(
    data: st.DataObject, source: Path, rounds: int
) -> None:
    policies = {p.name: p.read_text() for p in POLICIES}
    policies[source.name] = _dump(_mutate(data.draw, _documents(source), rounds))
    workloads = {p.name: p.read_text() for p in WORKLOADS}
    code, _, err = run_check(workloads, policy_files=policies)
    assert_contract(code, err)


GOOD = EXAMPLES / "workloads" / "good-deployment.yaml"
#: Where in a Deployment the engine needs a map (or a list of maps) to judge it.
STRUCTURAL = [
    ("spec",),
    ("spec", "template"),
    ("spec", "template", "spec"),
    ("spec", "template", "spec", "containers"),
    ("spec", "template", "spec", "containers", 0),
    ("metadata",),
]
not_a_map = scalars | st.lists(scalars, max_size=2)
not_a_list = (
    st.booleans()
    | st.integers()
    | st.text(max_size=4)
    | st.dictionaries(st.text(max_size=4), scalars, min_size=1, max_size=2)
)


@BUDGET
@given(data=st.data(), where=st.sampled_from(STRUCTURAL))
def test_objects_the_engine_cannot_judge_always_exit_two(
    data: st.DataObject, where: tuple[str | int, ...]
) -> None:
    (deployment,) = _documents(GOOD)
    node = deployment
    for token in where[:-1]:
        node = node[token]
    wants_list = where[-1] == "containers"
    replacement = data.draw(not_a_list if wants_list else not_a_map)
    if where == ("metadata",) and replacement is None:
        replacement = [None]  # no metadata at all is a judgeable (if unnamed) object
    node[where[-1]] = replacement
    code, out, err = run_check({"bad.yaml": _dump([deployment])})
    assert code == 2, (where, replacement, out)
    assert "bad.yaml#1" in err and "Traceback" not in err and err.count("\n") == 1
