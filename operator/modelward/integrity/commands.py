"""The ``verify``, ``scan`` and ``verify-pod`` subcommands of the ``modelward`` CLI.

``cli.py`` owns the top-level parser and calls :func:`register_commands`; each subcommand sets
``handler`` to a function ``(argparse.Namespace) -> int`` returning the exit code:

====  =========================================================================
0     verified / clean
1     rejected / unsafe (the reason names files, signer or findings)
2     the input could not be checked (unreadable signature, bad key, missing path)
====  =========================================================================
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from modelward.cliargs import (
    STDIN,
    STRUCTURED,
    HelpFormatter,
    add_output_argument,
    render_structured,
)
from modelward.console import emit
from modelward.integrity.errors import UnusableInputError
from modelward.integrity.result import VerifierResult
from modelward.integrity.trust import (
    TrustedCA,
    TrustedKey,
    TrustPolicy,
    load_ca_certificates,
    load_public_keys,
)
from modelward.integrity.verification import (
    DEFAULT_ALLOWED_IGNORE_PATHS,
    VerificationPolicy,
    VerificationResult,
    verify_model,
)

if TYPE_CHECKING:  # the scanner is imported on first use: `verify` starts faster without it
    from modelward.integrity.scanning import ScanReport

EXIT_OK, EXIT_REJECTED, EXIT_UNUSABLE = 0, 1, 2

_VERIFY_EPILOG = """\
examples:
  # sign with the OpenSSF model_signing tool, then verify with modelward
  model_signing sign key --private_key signer.pem --signature model/model.sig model/
  modelward verify model/ --signature model/model.sig --public-key signer.pub

  # certificate method: the leaf must chain to a trusted CA and be valid now
  modelward verify model/ --signature model.sig --ca-cert ca.pem -o json

  # the signature bundle on standard input
  oras blob fetch registry/model@sha256:... -o - | modelward verify model/ --signature - \\
      --public-key signer.pub -o yaml

exit codes: 0 verified, 1 rejected (reason printed), 2 input could not be checked
"""

_SCAN_EPILOG = """\
examples:
  modelward scan model/                       # every file, format decided from content
  modelward scan pytorch_model.bin -o json
  modelward scan model/ --allow-global mypkg.config.ModelConfig -o yaml
  modelward scan model.joblib --profile sklearn   # vetted scikit-learn estimator classes
  curl -sL https://example.com/model.pkl | modelward scan -   # standard input

exit codes: 0 clean, 1 unsafe (findings printed; a file that spends its expansion budget
is an archive-bomb finding), 2 a path could not be scanned (an unreadable file or folder is
named; the rest is still scanned)
"""

_VERIFY_POD_EPILOG = """\
This is the command the verifier init container injected by modelward's mutating webhook
runs. It writes a compact JSON result (< 4096 bytes) to the termination log, which the
operator reads from pod status, prints a summary, and exits 0 only when the model is
verified (and clean when --scan is on).

example:
  modelward verify-pod --model-path /models/llama --signature /models/llama/model.sig \\
      --public-key /etc/modelward/keys/signer.pub --policy prod/require-signed

exit codes: 0 verified (and clean), 1 rejected or unsafe, 2 the model could not be checked
"""


# --------------------------------------------------------------------------- parsers


def _add_trust_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("trust (at least one of --public-key / --ca-cert)")
    group.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="PEM",
        help="trusted ECDSA public key (P-256/P-384/P-521); repeatable",
    )
    group.add_argument(
        "--ca-cert",
        action="append",
        default=[],
        metavar="PEM",
        help="trusted CA certificate(s) for the certificate method; repeatable",
    )
    group.add_argument(
        "--identity",
        action="append",
        default=[],
        metavar="VALUE",
        help="with --ca-cert: require the signing certificate to carry this "
        "SAN (email, URI, DNS) or RFC 4514 subject; repeatable",
    )


def _add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("policy (stricter than model_signing by default)")
    group.add_argument(
        "--allow-shards",
        action="store_true",
        help="accept 'shards' serialization (blind to added empty files)",
    )
    group.add_argument(
        "--allowed-ignore-path",
        action="append",
        default=[],
        metavar="PATH",
        help="a path the signature may exempt from verification, in addition "
        f"to {', '.join(sorted(DEFAULT_ALLOWED_IGNORE_PATHS))}; repeatable",
    )
    group.add_argument(
        "--allow-symlinks",
        action="store_true",
        help="accept symlinks to regular files inside the model directory "
        "(only if the signature allows them too)",
    )
    group.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="hashing threads (default: the CPUs this process may use)",
    )


def _add_allow_arguments(parser: argparse.ArgumentParser) -> None:
    from modelward.integrity.scanning.profiles import PROFILE_NAMES

    parser.add_argument(
        "--allow-global",
        action="append",
        default=[],
        metavar="MODULE.NAME",
        help="also accept this pickle global (exact name, or MODULE.* for every name in a "
        "module and its submodules); repeatable",
    )
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        choices=PROFILE_NAMES,
        help="also accept the vetted classes of this library's pickles/joblib files "
        "(trusted types, see docs/integrity.md); repeatable",
    )


def register_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``verify``, ``scan`` and ``verify-pod`` to the ``modelward`` CLI."""
    fmt = HelpFormatter

    verify = subparsers.add_parser(
        "verify",
        formatter_class=fmt,
        epilog=_VERIFY_EPILOG,
        help="verify a model against an OpenSSF Model Signing signature",
        description="Verify that MODEL_PATH holds exactly the files an authorised signer "
        "signed (OpenSSF Model Signing format, as written by model_signing).",
    )
    verify.add_argument(
        "model_path", metavar="MODEL_PATH", help="model directory (or single model file)"
    )
    verify.add_argument(
        "--signature",
        metavar="SIG",
        help="signature bundle, - for standard input (default: MODEL_PATH/model.sig)",
    )
    _add_trust_arguments(verify)
    _add_policy_arguments(verify)
    add_output_argument(verify)
    verify.set_defaults(handler=run_verify)

    scan = subparsers.add_parser(
        "scan",
        formatter_class=fmt,
        epilog=_SCAN_EPILOG,
        help="scan model files for code-execution payloads (pickle, PyTorch, NumPy, joblib, "
        "ONNX) and malformed safetensors/GGUF headers",
        description="Detect code-execution payloads without loading anything: the format is "
        "decided from content, pickles are walked opcode by opcode against an "
        "allowlist of the globals ordinary checkpoints need.",
    )
    scan.add_argument(
        "paths", nargs="+", metavar="PATH", help="files or directories, - for standard input"
    )
    _add_allow_arguments(scan)
    scan.add_argument(
        "--allow-onnx-domain",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="also accept ONNX operators of this domain; repeatable",
    )
    scan.add_argument(
        "--max-expansion",
        type=int,
        default=None,
        metavar="MIB",
        help="expansion budget per file in MiB (bytes decompressed or read from archive "
        "members); default: 100x the file's size, at least 256 MiB, at most 16 GiB more than "
        "its size. Raise it only for files you trust",
    )
    add_output_argument(scan)
    scan.set_defaults(handler=run_scan)

    pod = subparsers.add_parser(
        "verify-pod",
        formatter_class=fmt,
        epilog=_VERIFY_POD_EPILOG,
        help="verify (and scan) a model inside a pod; used by the injected init container",
        description="Verify and optionally scan a mounted model, and report the result as a "
        "Kubernetes termination message.",
    )
    pod.add_argument("--model-path", required=True, metavar="DIR", help="the mounted model")
    pod.add_argument("--signature", required=True, metavar="FILE", help="its signature bundle")
    _add_trust_arguments(pod)
    _add_policy_arguments(pod)
    pod.add_argument(
        "--scan",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="scan the verified files for payloads (default: on)",
    )
    _add_allow_arguments(pod)
    pod.add_argument(
        "--termination-log",
        default="/dev/termination-log",
        metavar="PATH",
        help="where the result for the operator is written",
    )
    pod.add_argument(
        "--policy",
        default=None,
        metavar="NAME",
        help="policy that required this check (copied into the result)",
    )
    add_output_argument(pod, help="of the summary (the termination log is always compact JSON)")
    pod.set_defaults(handler=run_verify_pod)


# --------------------------------------------------------------------------- helpers

#: A signature bundle is a few KiB; more on standard input is not one.
SIGNATURE_LIMIT = 16 << 20
#: How a model read from standard input is named in findings.
STDIN_NAME = "<stdin>"


def _copy_stdin(target: str, limit: int | None) -> None:
    copied = 0
    with open(target, "wb") as out:
        while chunk := sys.stdin.buffer.read(1 << 20):
            copied += len(chunk)
            if limit is not None and copied > limit:
                raise UnusableInputError(
                    f"standard input: more than {limit >> 20} MiB, not a signature bundle"
                )
            out.write(chunk)


@contextlib.contextmanager
def _stdin_as_file(path: str, *, name: str, limit: int | None) -> Iterator[str]:
    """``path`` itself, or for ``-`` a private temporary file holding standard input (the
    verifier and scanner read files: a model may be larger than memory), removed after."""
    if path != STDIN:
        yield path
        return
    folder = tempfile.mkdtemp(prefix="modelward-stdin-")
    try:
        target = os.path.join(folder, name)
        try:
            _copy_stdin(target, limit)
        except (OSError, ValueError, AttributeError) as exc:
            raise UnusableInputError(f"standard input: cannot read ({type(exc).__name__})") from exc
        yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(1 << 20)
    except OSError as exc:
        raise UnusableInputError(f"{path}: cannot read: {exc.strerror}") from exc


def trust_from_args(args: argparse.Namespace) -> TrustPolicy:
    """Load the trust material named on the command line (raises UnusableInputError)."""
    keys: list[TrustedKey] = []
    cas: list[TrustedCA] = []
    for path in args.public_key:
        keys.extend(load_public_keys(_read(path), source=path))
    for path in args.ca_cert:
        cas.extend(load_ca_certificates(_read(path), source=path))
    if not keys and not cas:
        raise UnusableInputError("no trust material: pass --public-key and/or --ca-cert")
    return TrustPolicy(keys=tuple(keys), cas=tuple(cas), identities=frozenset(args.identity))


def policy_from_args(args: argparse.Namespace) -> VerificationPolicy:
    if args.workers is not None and args.workers < 1:
        raise UnusableInputError("--workers must be at least 1")
    allowed = DEFAULT_ALLOWED_IGNORE_PATHS | {p.strip("/") for p in args.allowed_ignore_path}
    return VerificationPolicy(
        allowed_ignore_paths=frozenset(allowed),
        allow_shards=args.allow_shards,
        allow_symlinks=args.allow_symlinks,
        workers=args.workers,
    )


def _print(text: str, stream: TextIO | None = None) -> None:
    emit(text, stream=stream)


def _fail(message: str, output: str) -> int:
    if output in STRUCTURED:
        _print(render_structured({"result": "error", "reason": message}, output))
    else:
        _print(f"error: {' '.join(message.split())}", sys.stderr)
    return EXIT_UNUSABLE


def format_verification(result: VerificationResult) -> str:
    """The text output of ``modelward verify``."""
    lines = []
    if result.verified:
        lines.append(f"VERIFIED {result.model_path}")
    else:
        lines.append(f"REJECTED {result.model_path}: {result.reason}")
    if result.signer is not None:
        lines.append(f"  signer:  {result.signer}")
    if result.subject_digest is not None:
        lines.append(f"  digest:  sha256:{result.subject_digest}")
    if result.serialization is not None:
        s = result.serialization
        lines.append(
            f"  format:  {s.method}, {s.hash_type}"
            + (f", shard_size {s.shard_size}" if s.shard_size else "")
        )
    if result.files:
        lines.append(
            f"  files:   {len(result.files)} ({result.hashed_bytes / 2**20:.1f} MiB "
            f"hashed in {result.duration_s:.2f}s)"
        )
    for f in result.files:
        if f.status != "ok":
            lines.append(f"    {f.status:<8} {f.name}")
    return "\n".join(lines)


def format_scan(report: ScanReport) -> str:
    """The text output of ``modelward scan``."""
    lines = []
    for finding in report.findings:
        where = finding.path + (f" [{finding.member}]" if finding.member else "")
        at = f" @{finding.offset}" if finding.offset is not None else ""
        glob = f" {finding.global_name}" if finding.global_name else ""
        lines.append(f"UNSAFE {where}{at}: {finding.rule}{glob}: {finding.message}")
    for error in report.errors:
        lines.append(f"ERROR  {error}")
    counts = report.counts()
    lines.append(
        f"{report.verdict.upper()}: {counts['files']} files scanned "
        f"({', '.join(f'{n} {k}' for k, n in sorted(counts['formats'].items()))}), "
        f"{len(report.findings)} findings, {len(report.errors)} errors"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- handlers


def run_verify(args: argparse.Namespace) -> int:
    """``modelward verify``."""
    signature = args.signature or (
        os.path.join(args.model_path, "model.sig") if os.path.isdir(args.model_path) else None
    )
    if signature is None:
        return _fail("--signature is required when MODEL_PATH is a file", args.output)
    try:
        with _stdin_as_file(signature, name="model.sig", limit=SIGNATURE_LIMIT) as path:
            result = verify_model(
                model_path=args.model_path,
                signature_path=path,
                trust=trust_from_args(args),
                policy=policy_from_args(args),
            )
    except UnusableInputError as exc:
        return _fail(str(exc), args.output)
    if args.output in STRUCTURED:
        _print(render_structured(result.to_dict(), args.output))
    else:
        _print(format_verification(result))
    return EXIT_OK if result.verified else EXIT_REJECTED


def scan_exit_code(report: ScanReport) -> int:
    return {"clean": EXIT_OK, "unsafe": EXIT_REJECTED}.get(report.verdict, EXIT_UNUSABLE)


def run_scan(args: argparse.Namespace) -> int:
    """``modelward scan``."""
    from modelward.integrity.scanning import ScanPolicy, scan_paths

    limits: dict[str, int] = {}
    if args.max_expansion is not None:
        if args.max_expansion < 1:
            return _fail("--max-expansion must be at least 1 (MiB)", args.output)
        limits = dict(
            expansion_floor=args.max_expansion << 20, max_expansion_bytes=args.max_expansion << 20
        )
    policy = ScanPolicy(
        extra_allowed_globals=frozenset(args.allow_global),
        extra_onnx_domains=frozenset(args.allow_onnx_domain),
        profiles=tuple(args.profile),
        **limits,
    )
    files = [p for p in args.paths if p != STDIN]
    report = scan_paths(files, policy=policy)
    if STDIN in args.paths:
        with _stdin_as_file(STDIN, name=STDIN_NAME, limit=None) as path:
            piped = scan_paths([path], policy=policy, display_root=os.path.dirname(path))
        report = type(report)(files=(*report.files, *piped.files))
    if args.output in STRUCTURED:
        _print(render_structured(report.to_dict(), args.output))
    else:
        _print(format_scan(report))
    return scan_exit_code(report)


def _scan_summary(report: ScanReport) -> str:
    if report.findings:
        first = report.findings[0]
        where = first.path + (f"[{first.member}]" if first.member else "")
        more = f" (+{len(report.findings) - 1} more)" if len(report.findings) > 1 else ""
        return f"unsafe payload in {where}: {first.rule} {first.global_name or ''}".rstrip() + more
    return "; ".join(report.errors[:3])


def verify_pod(args: argparse.Namespace) -> tuple[VerifierResult, str]:
    """Run the checks of ``verify-pod``; never raises (errors become an "error" result)."""
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        result = verify_model(
            model_path=args.model_path,
            signature_path=args.signature,
            trust=trust_from_args(args),
            policy=policy_from_args(args),
        )
    except UnusableInputError as exc:
        return VerifierResult(
            result="error",
            scan="skipped",
            reason=str(exc),
            duration_ms=elapsed(),
            policy=args.policy,
        ), ""
    except Exception as exc:  # a bug must still produce a termination message
        return VerifierResult(
            result="error",
            scan="skipped",
            reason=f"internal error: {type(exc).__name__}: {exc}",
            duration_ms=elapsed(),
            policy=args.policy,
        ), ""
    # A verified model is the signed one; a rejected one is recorded under what was found,
    # never under the digest of the genuine model it imitates.
    digest = result.subject_digest if result.verified else result.observed_digest
    common: dict[str, Any] = dict(
        digest=None if digest is None else f"sha256:{digest}",
        signer=None if result.signer is None else result.signer.short,
        files=len(result.files),
        policy=args.policy,
    )
    details = format_verification(result)
    if not result.verified:
        return VerifierResult(
            result="rejected", scan="skipped", reason=result.reason, duration_ms=elapsed(), **common
        ), details
    if not args.scan:
        return VerifierResult(
            result="verified", scan="skipped", reason=result.reason, duration_ms=elapsed(), **common
        ), details
    from modelward.integrity.scanning import ScanPolicy, scan_paths

    root = os.path.realpath(args.model_path)
    paths = [root] if os.path.isfile(root) else [os.path.join(root, f.name) for f in result.files]
    try:
        policy = ScanPolicy(
            extra_allowed_globals=frozenset(args.allow_global), profiles=tuple(args.profile)
        )
        report = scan_paths(paths, policy=policy, display_root=root)
    except Exception as exc:
        return VerifierResult(
            result="verified",
            scan="error",
            reason=f"scan failed: {type(exc).__name__}: {exc}",
            duration_ms=elapsed(),
            **common,
        ), details
    details += "\n" + format_scan(report)
    scan_reason = result.reason if report.verdict == "clean" else _scan_summary(report)
    return VerifierResult(
        result="verified", scan=report.verdict, reason=scan_reason, duration_ms=elapsed(), **common
    ), details


def run_verify_pod(args: argparse.Namespace) -> int:
    """``modelward verify-pod``: verify, scan, write the termination message."""
    outcome, details = verify_pod(args)
    message = outcome.to_termination_message()
    try:
        with open(args.termination_log, "w", encoding="utf-8") as f:
            f.write(message)
    except OSError as exc:
        _print(
            f"warning: cannot write termination log {args.termination_log}: {exc.strerror}",
            sys.stderr,
        )
    if args.output in STRUCTURED:
        _print(render_structured({**outcome.to_dict(), "details": details}, args.output))
    else:
        headline = {"verified": "VERIFIED", "rejected": "REJECTED", "error": "ERROR"}
        _print(
            f"modelward verify-pod: {headline[outcome.result]} (scan: {outcome.scan}) in "
            f"{outcome.duration_ms} ms: {outcome.reason}"
        )
        if details:
            _print(textwrap.indent(details, "  "))
    if (
        outcome.admitted
        and outcome.result == "verified"
        and (outcome.scan == "clean" or not args.scan)
    ):
        return EXIT_OK
    return EXIT_UNUSABLE if outcome.result == "error" or outcome.scan == "error" else EXIT_REJECTED


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (tests, and ``python -m modelward.integrity.commands``)."""
    parser = argparse.ArgumentParser(prog="modelward")
    register_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
