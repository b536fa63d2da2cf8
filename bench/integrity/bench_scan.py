"""Benchmark ``modelward scan`` against picklescan and modelscan (time and peak memory).

Inputs, built here by hand (nothing is loaded): a PyTorch zip checkpoint with tens of
thousands of tensors, and a 512 MiB raw pickle (a dict of NumPy-style arrays whose bytes
are inline, the shape of a large ``pickle.dump`` of arrays). picklescan and modelscan are
run from a separate venv (default /tmp/bench-venv: ``python -m venv /tmp/bench-venv &&
/tmp/bench-venv/bin/pip install picklescan modelscan``); each tool runs in its own process
and its peak RSS is taken from ``getrusage(RUSAGE_CHILDREN)``.

    .venv/bin/python bench/integrity/bench_scan.py [--tensors 30000] [--pickle-mib 512]
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import pickle
import statistics
import subprocess
import sys
import types
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MEASURE = Path(__file__).with_name("_measure.py")


class _Reduce:
    def __init__(self, func: Any, args: tuple[Any, ...], state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self) -> Any:
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


class _Storage:
    def __init__(self, cls: type, key: str, numel: int) -> None:
        self.cls, self.key, self.numel = cls, key, numel


def _stand_ins() -> dict[str, Any]:
    """Modules/functions with the names real checkpoints reference (never called)."""
    names = {}
    for mod, attr, kind in (
        ("torch._utils", "_rebuild_tensor_v2", "fn"),
        ("torch", "FloatStorage", "cls"),
        ("numpy.core.multiarray", "_reconstruct", "fn"),
        ("numpy", "ndarray", "cls"),
        ("numpy", "dtype", "cls"),
    ):
        module = sys.modules.setdefault(mod, types.ModuleType(mod))
        if kind == "fn":

            def f(*a: Any) -> None:
                raise AssertionError

            f.__module__, f.__qualname__, f.__name__ = mod, attr, attr
            obj: Any = f
        else:
            obj = type(attr, (), {"__module__": mod})
        setattr(module, attr, obj)
        names[attr] = obj
    return names


def make_checkpoint(path: Path, tensors: int) -> None:
    n = _stand_ins()
    storages: list[_Storage] = []
    sd = collections.OrderedDict()
    for i in range(tensors):
        s = _Storage(n["FloatStorage"], str(i), 4)
        storages.append(s)
        sd[f"model.layers.{i // 10}.block.{i % 10}.weight"] = _Reduce(
            n["_rebuild_tensor_v2"], (s, 0, (2, 2), (2, 1), False, collections.OrderedDict())
        )

    class P(pickle.Pickler):
        def persistent_id(self, o: Any) -> Any:
            return ("storage", o.cls, o.key, "cpu", o.numel) if isinstance(o, _Storage) else None

    buf = io.BytesIO()
    P(buf, protocol=2).dump(sd)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "little")
        for s in storages:
            z.writestr(f"archive/data/{s.key}", b"\x00" * 16)
        z.writestr("archive/version", "3\n")


def make_raw_pickle(path: Path, mib: int) -> None:
    n = _stand_ins()
    block = os.urandom(1 << 20)
    f8 = _Reduce(n["dtype"], ("f8", False, True), (3, "<", None, None, None, -1, -1, 0))
    with open(path, "wb") as f:
        arrays = {}
        for i in range(mib * 4):  # 256 KiB arrays
            arrays[f"array_{i}"] = _Reduce(
                n["_reconstruct"],
                (n["ndarray"], (0,), b"b"),
                (1, (32768,), f8, False, block[(i % 4) << 18 : ((i % 4) + 1) << 18]),
            )
        pickle.dump(arrays, f, protocol=4)


def measure(cmd: list[str], runs: int) -> dict[str, Any]:
    results = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, str(MEASURE), *cmd], capture_output=True, text=True, check=True
        ).stdout
        results.append(json.loads(out))
    return {
        "min_s": round(min(r["seconds"] for r in results), 3),
        "median_s": round(statistics.median(r["seconds"] for r in results), 3),
        "peak_mib": round(max(r["peak_mib"] for r in results), 1),
        "rc": results[-1]["rc"],
        "stderr_tail": results[-1]["stderr"][-200:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tensors", type=int, default=30_000)
    parser.add_argument("--pickle-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", default="/tmp/modelward-bench-scan")
    parser.add_argument("--tools-venv", default="/tmp/bench-venv")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / f"checkpoint-{args.tensors}.pt"
    raw = work / f"raw-{args.pickle_mib}MiB.pkl"
    if not ckpt.exists():
        make_checkpoint(ckpt, args.tensors)
    if not raw.exists():
        make_raw_pickle(raw, args.pickle_mib)
    for path in (ckpt, raw):  # page-cache the inputs
        with open(path, "rb") as f:
            while f.read(8 << 20):
                pass
    env = dict(os.environ, PYTHONPATH=str(ROOT / "operator"))
    os.environ.update(env)
    tools = Path(args.tools_venv) / "bin"
    report: dict[str, Any] = {
        "inputs": {
            ckpt.name: {"bytes": ckpt.stat().st_size, "tensors": args.tensors},
            raw.name: {"bytes": raw.stat().st_size},
        },
        "results": {},
        "loadavg": os.getloadavg(),
    }
    for path in (ckpt, raw):
        row: dict[str, Any] = {}
        row["modelward"] = measure(
            [sys.executable, "-m", "modelward.integrity.commands", "scan", str(path)], args.runs
        )
        if (tools / "picklescan").exists():
            row["picklescan"] = measure([str(tools / "picklescan"), "--path", str(path)], args.runs)
        if (tools / "modelscan").exists():
            row["modelscan"] = measure([str(tools / "modelscan"), "-p", str(path)], args.runs)
        report["results"][path.name] = row
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
