"""Benchmark ``modelward verify`` against ``model_signing verify`` and the machine's limit.

The model is a few large files (default 4 x 512 MiB), page-cached, signed with the real
``model_signing sign key``. The SHA-256 limit is measured in the same run two ways:
``openssl speed -evp sha256`` (16 KiB blocks, in-cache: an upper bound) and hashlib over a
64 MiB in-memory buffer (memory-resident data, what a verifier actually hashes), each
single-core figure times the CPUs this process may use.

    .venv/bin/python bench/integrity/bench_verify.py [--files 4] [--file-mib 512] [--runs 5]
        [--hashing sha256|blake3]

With ``--hashing blake3`` the model is signed through model_signing's API with BLAKE3 hashing
(its CLI signs SHA-256 only) and the limit is the ``blake3`` package's single-core rate over
the same 64 MiB buffer (one thread per hasher, as the verifier runs it) times the CPUs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MEASURE = Path(__file__).with_name("_measure.py")
sys.path.insert(0, str(ROOT / "operator"))

from modelward.integrity.hashing import available_cpus, new_hasher  # noqa: E402
from modelward.integrity.trust import TrustPolicy, load_public_keys  # noqa: E402
from modelward.integrity.verification import verify_model  # noqa: E402


def make_model(directory: Path, files: int, file_mib: int) -> Path:
    model = directory / f"model-{files}x{file_mib}"
    if model.exists() and len(list(model.glob("*.bin"))) == files:
        return model
    model.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20)
    for i in range(files):
        with open(model / f"shard-{i:05d}.bin", "wb") as f:
            for j in range(file_mib):
                f.write(block[j % 7 :] + block[: j % 7])
    (model / "config.json").write_text('{"bench": true}\n')
    return model


def make_key(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = directory / "bench.pem", directory / "bench.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def warm(model: Path) -> int:
    total = 0
    for path in model.rglob("*"):
        if path.is_file():
            with open(path, "rb", buffering=0) as f:
                while chunk := f.read(8 << 20):
                    total += len(chunk)
    return total


def sign(model: Path, private: Path, signature: Path, hashing: str) -> None:
    """model_signing signs: its CLI for SHA-256, its API for BLAKE3."""
    if hashing == "sha256":
        cmd = [str(BIN / "model_signing"), "sign", "key", "--private_key", str(private)]
        cmd += ["--signature", str(signature), str(model)]
    else:
        script = (
            "import model_signing, sys; m, k, s = sys.argv[1:]; "
            "h = model_signing.hashing.Config().use_file_serialization("
            f"hashing_algorithm={hashing!r}).set_ignored_paths(paths=[s]); "
            "model_signing.signing.Config().use_elliptic_key_signer(private_key=k)"
            ".set_hashing_config(h).sign(m, s)"
        )
        cmd = [sys.executable, "-c", script, str(model), str(private), str(signature)]
    subprocess.run(cmd, check=True, capture_output=True)


def openssl_sha256_single_core() -> float | None:
    try:
        out = subprocess.run(
            ["openssl", "speed", "-evp", "sha256", "-seconds", "3"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    line = [ln for ln in out.splitlines() if ln.lower().startswith("sha256")][-1]
    kbs = re.findall(r"([\d.]+)k", line)
    return float(kbs[-1]) * 1000  # bytes/s at the largest block size


def hashlib_single_core(hashing: str = "sha256") -> float:
    buf = os.urandom(64 << 20)
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        h = new_hasher(hashing) if hashing != "sha256" else hashlib.sha256()
        view = memoryview(buf)
        for i in range(0, len(buf), 1 << 20):
            h.update(view[i : i + (1 << 20)])
        best = max(best, len(buf) / (time.perf_counter() - started))
    return best


def run(cmd: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(MEASURE), *cmd], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, float] = json.loads(out)
    if result["rc"] != 0:
        raise SystemExit(f"{cmd[0]} failed: {result}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--file-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", default="/tmp/modelward-bench-verify")
    parser.add_argument("--hashing", choices=("sha256", "blake3"), default="sha256")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    model = make_model(work, args.files, args.file_mib)
    private, public = make_key(work)
    signature = work / f"model-{args.hashing}.sig"
    sign(model, private, signature, args.hashing)
    load_before = os.getloadavg()
    size = warm(model)
    cpus = available_cpus()
    openssl = openssl_sha256_single_core() if args.hashing == "sha256" else None
    hashlib_rate = hashlib_single_core(args.hashing)
    limit_hashlib = size / (hashlib_rate * cpus)
    limit_openssl = size / (openssl * cpus) if openssl else None

    ours_cmd = [
        sys.executable,
        "-m",
        "modelward.integrity.commands",
        "verify",
        str(model),
        "--signature",
        str(signature),
        "--public-key",
        str(public),
    ]
    tool_cmd = [
        str(BIN / "model_signing"),
        "verify",
        "key",
        "--signature",
        str(signature),
        "--public_key",
        str(public),
        str(model),
    ]
    if args.hashing != "sha256":  # model_signing's CLI verifies SHA-256 only: its API then
        script = (
            "import model_signing, sys; m, k, s = sys.argv[1:]; "
            "h = model_signing.hashing.Config().use_file_serialization("
            f"hashing_algorithm={args.hashing!r}).set_ignored_paths(paths=[s]); "
            "model_signing.verifying.Config().use_elliptic_key_verifier(public_key=k)"
            ".set_hashing_config(h).verify(m, s)"
        )
        tool_cmd = [sys.executable, "-c", script, str(model), str(public), str(signature)]
    env_path = str(ROOT / "operator")
    os.environ["PYTHONPATH"] = env_path + os.pathsep + os.environ.get("PYTHONPATH", "")
    ours, tool = [], []
    for _ in range(args.runs):
        warm(model)
        ours.append(run(ours_cmd))
        tool.append(run(tool_cmd))
    trust = TrustPolicy(keys=tuple(load_public_keys(public.read_bytes(), source="bench")))
    in_process = []
    for _ in range(3):
        warm(model)
        res = verify_model(model_path=str(model), signature_path=str(signature), trust=trust)
        assert res.verified, res.reason
        in_process.append(res.duration_s)
    # The machine is shared: the minimum is the uncontended figure, the median is shown too.
    ours_s = min(r["seconds"] for r in ours)
    tool_s = min(r["seconds"] for r in tool)
    ours_med = statistics.median(r["seconds"] for r in ours)
    tool_med = statistics.median(r["seconds"] for r in tool)
    report = {
        "model": f"{args.files} x {args.file_mib} MiB (+config.json), page-cached",
        "hashing": args.hashing,
        "bytes": size,
        "cpus": cpus,
        "sha256_single_core_openssl_GBps": None if openssl is None else round(openssl / 1e9, 3),
        f"{args.hashing}_single_core_hashlib_GBps": round(hashlib_rate / 1e9, 3),
        "limit_openssl_s": None if limit_openssl is None else round(limit_openssl, 3),
        "limit_hashlib_s": round(limit_hashlib, 3),
        "modelward_verify_s": round(ours_s, 3),
        "modelward_peak_mib": round(max(r["peak_mib"] for r in ours), 1),
        "modelward_in_process_verify_s": round(min(in_process), 3),
        "in_process_vs_openssl_limit": None
        if limit_openssl is None
        else round(min(in_process) / limit_openssl, 2),
        "model_signing_verify_s": round(tool_s, 3),
        "model_signing_peak_mib": round(max(r["peak_mib"] for r in tool), 1),
        "modelward_vs_hashlib_limit": round(ours_s / limit_hashlib, 2),
        "modelward_vs_openssl_limit": None
        if limit_openssl is None
        else round(ours_s / limit_openssl, 2),
        "speedup_vs_model_signing": round(tool_s / ours_s, 2),
        "median_modelward_verify_s": round(ours_med, 3),
        "median_model_signing_verify_s": round(tool_med, 3),
        "median_speedup_vs_model_signing": round(tool_med / ours_med, 2),
        "runs": args.runs,
        "all_modelward_s": [round(r["seconds"], 3) for r in ours],
        "all_model_signing_s": [round(r["seconds"], 3) for r in tool],
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
