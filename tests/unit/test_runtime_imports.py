"""What ``modelward run`` loads: nothing the long-running process never calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import modelward

PROBE = """
import json, sys
from modelward.cli import UNUSED_FORMAT_CHECKERS, skip_unused_format_checkers
skip_unused_format_checkers()
import modelward.run
from modelward.engine import parse_policy
from modelward.errors import PolicyError
policy = {"apiVersion": "modelward.io/v1alpha1", "kind": "ClusterModelPolicy",
          "metadata": {"name": "p"},
          "spec": {"match": {"namespaces": ["a"]}, "isolation": {"unknownField": 1}}}
try:
    parse_policy(policy)
    refused = False
except PolicyError as exc:
    refused = "unknown field" in str(exc)
loaded = sorted(n for n in (*UNUSED_FORMAT_CHECKERS, "lark") if sys.modules.get(n) is not None)
print(json.dumps({"loaded": loaded, "refused": refused}))
"""


def test_run_loads_no_format_checker_and_still_validates_policies() -> None:
    root = Path(modelward.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True
    )
    report = json.loads(result.stdout)
    assert report == {"loaded": [], "refused": True}
