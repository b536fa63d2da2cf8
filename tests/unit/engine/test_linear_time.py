"""Every rule's evaluation grows linearly with its input, whatever the input.

Admission runs on the event loop that also answers health checks: one request whose cost grows
quadratically with its size (a 200 kB env value took 38 s before the credential patterns were
bounded) stalls every other review. Each case (``modelward_dev.adversarial``) builds a pod
around one adversarial string or list (shapes that make a backtracking regular expression or a
nested loop retry from every position) and evaluates it through the public entry,
``evaluate_workload`` plus the JSONPatch that mutation would send, under policies that enable
every rule family in Enforce and in Patch mode.

How growth is judged without depending on the machine's speed:

- time is the thread's CPU time (``time.thread_time``), which other processes on a busy machine
  do not inflate, and each size is measured best-of-several with the garbage collector paused;
- the claim is about *ratios within one run*: the cost per byte at 1 MiB must stay below
  ``FACTOR`` times the cost per byte at 64 KiB. Linear code gives ~1 (a little more as data
  leaves the caches); quadratic code gives 16;
- the sizes climb 4 KiB, 16 KiB, 64 KiB, 256 KiB, 1 MiB, and every run is stopped (by a
  CPU-time alarm) once it has used ``FACTOR`` times the share of the smallest size's time that a
  linear cost would allow: a quadratic regression fails within seconds instead of running for
  an hour (the old "password in a URL" pattern needs ~25 minutes for 1 MiB).
"""

from __future__ import annotations

import gc
import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from modelward.engine import StaticKeySource, evaluate_workload, workload_from_object
from modelward.engine.patches import remedies_to_json_patch
from modelward.engine.rules import secrets
from modelward_dev.adversarial import CASES
from tests.unit.engine.builders import DIGEST, compliant_pod, facts, policy
from tests.unit.engine.rules.test_integrity import CA, KEY

#: Largest accepted growth of the cost per byte between the reference and the largest size.
FACTOR = 4.0
KIB = 1024
SIZES = (4 * KIB, 16 * KIB, 64 * KIB, 256 * KIB, 1024 * KIB)
REFERENCE = 64 * KIB
#: Best of this many runs per size: more where runs are cheap, so the reference is sharp.
REPEATS = {4 * KIB: 5, 16 * KIB: 5, 64 * KIB: 5, 256 * KIB: 2, 1024 * KIB: 2}

SECTIONS: dict[str, Any] = {
    "isolation": {
        "podSecurity": "restricted",
        "runtimeClassNames": ["gvisor", "kata"],
        "gpu": {},
        "allowedServiceAccountTokenAudiences": ["vault", "https://vault.example.com"],
    },
    "images": {
        "allowedRegistries": [
            "registry.example.com/serving/*",
            "*.example.com/models/**",
            "ghcr.io",
            "docker.io/library/*",
        ],
    },
    "transport": {},
    "secrets": {"allowedEnvNames": ["BENCH_*", "*_PUBLIC*_URL"]},
    "integrity": {
        "trustedSigners": [
            {"name": "release", "publicKey": KEY},
            {
                "name": "ca",
                "type": "caCertificate",
                "configMapKeyRef": {"name": "c", "key": "k", "namespace": "modelward-system"},
            },
        ],
        "verifier": {"image": f"registry.example.com/modelward@{DIGEST}"},
    },
}
KEYS = StaticKeySource("modelward-system", {("ConfigMap", "modelward-system", "c", "k"): CA})
POLICIES = (
    policy(SECTIONS, name="enforce", keys=KEYS),
    policy(SECTIONS, name="patch", mode="Patch", keys=KEYS),
)


BASE = compliant_pod()


class _TooSlow(Exception):
    """The CPU-time alarm fired: the run took more than the linear budget allows."""


@contextmanager
def _cpu_deadline(seconds: float) -> Iterator[None]:
    def alarm(signum: int, frame: object) -> None:
        raise _TooSlow

    previous = signal.signal(signal.SIGVTALRM, alarm)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


def _evaluate(obj: dict[str, Any]) -> None:
    secrets.forget_verdicts()  # judge every value afresh, as a new review's would be
    workload = workload_from_object(obj)
    decision = evaluate_workload(workload, facts(), POLICIES)
    remedies_to_json_patch(workload, (r for f in decision.fixes for r in f.violation.remedies))


def _best_cpu_seconds(obj: dict[str, Any], *, repeats: int, deadline: float | None) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.thread_time()
        if deadline is None:
            _evaluate(obj)
        else:
            with _cpu_deadline(deadline):
                _evaluate(obj)
        best = min(best, time.thread_time() - started)
    return best


@pytest.fixture
def no_gc() -> Iterator[None]:
    """Collections would land in whichever run crosses a threshold; refcounting frees the rest."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("no_gc")
@pytest.mark.parametrize("case", sorted(CASES))
def test_evaluation_time_grows_linearly(case: str) -> None:
    per_byte: dict[int, float] = {}
    smallest: float | None = None
    for size in SIZES:
        obj = CASES[case](BASE, size)
        length = len(json.dumps(obj))
        assert length >= size * 0.9, f"{case}: the builder made {length} bytes, wanted {size}"
        if smallest is None:
            _evaluate(obj)  # warm: the first run compiles the policies' globs
        # The alarm's floor (10 ms) only keeps tiny budgets above the timer's resolution.
        deadline = None if smallest is None else max(FACTOR * smallest * length, 0.01)
        try:
            seconds = _best_cpu_seconds(obj, repeats=REPEATS[size], deadline=deadline)
        except _TooSlow:
            pytest.fail(
                f"{case}: evaluating {length} bytes took more than {deadline:.3f}s of CPU, "
                f"over {FACTOR}x the cost per byte at {SIZES[0]} bytes: it is not linear"
            )
        per_byte[size] = seconds / length
        if smallest is None:
            smallest = per_byte[size]
    growth = per_byte[SIZES[-1]] / per_byte[REFERENCE]
    assert growth < FACTOR, (
        f"{case}: the cost per byte grew {growth:.1f}x from {REFERENCE} to {SIZES[-1]} bytes "
        f"({per_byte[REFERENCE] * 1e9:.1f} -> {per_byte[SIZES[-1]] * 1e9:.1f} ns/byte)"
    )
