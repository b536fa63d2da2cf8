"""Dispatch each file (and each archive member, decompressed stream...) to its scanner.

Fail closed: a format that can carry code but cannot be opened is a finding
(``archive-unscannable``, ``*-malformed``); a bug or an I/O error while scanning makes the
file's result an error (exit 2), never "clean".
"""

from __future__ import annotations

import io
import mmap
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO, Any

from modelward.integrity.scanning.allowlist import Allowlist
from modelward.integrity.scanning.archives import (
    scan_compressed,
    scan_pickle_file,
    scan_tar,
    scan_zip,
)
from modelward.integrity.scanning.context import (
    Budget,
    BudgetExceeded,
    ScanContext,
    ScanPolicy,
    make_allowlist,
)
from modelward.integrity.scanning.formats import HEAD, is_text, sniff
from modelward.integrity.scanning.numpy_scan import scan_npy
from modelward.integrity.scanning.onnx_scan import scan_onnx
from modelward.integrity.scanning.pickle_scan import probe_pickle
from modelward.integrity.scanning.reader import Reader
from modelward.integrity.scanning.report import FileScan, Finding, ScanReport
from modelward.integrity.scanning.weights import check_gguf, check_safetensors

#: ONNX models above this size are memory-mapped rather than read (members are read).
_MAX_ONNX_MEMBER = 256 << 20


def scan_stream(
    stream: Any, ctx: ScanContext, size: int | None, *, file_path: str | None = None
) -> None:
    """Scan one stream: sniff it, then hand it to the scanner of its format."""
    if ctx.depth > ctx.policy.max_depth:
        ctx.add(
            "nesting-too-deep", f"nested more than {ctx.policy.max_depth} levels deep", offset=0
        )
        return
    reader = Reader(stream)
    head = reader.peek(HEAD)
    kind = sniff(head, size)
    if kind == "unknown":
        if is_text(head):
            kind = "text"
        if probe_pickle(head, ctx):
            kind = "pickle"
        elif kind == "unknown":
            kind = "data"
    ctx.formats.append(kind)
    if kind == "pickle":
        scan_pickle_file(reader, ctx)
    elif kind == "npy":
        scan_npy(reader, ctx)
    elif kind in ("zip", "tar"):
        seekable = _seekable(stream, reader, ctx)
        if kind == "zip":
            scan_zip(seekable, ctx, _member_scanner)
        else:
            scan_tar(seekable, ctx, _member_scanner)
    elif kind in ("gzip", "bz2", "xz", "zlib?", "lzma?"):
        scan_compressed(_Replay(reader), ctx, kind, size, _member_scanner)
    elif kind in ("7z", "rar", "zstd", "lz4"):
        ctx.add(
            "archive-unscannable",
            f"{kind} archives/compression cannot be scanned "
            "with the standard library; a loader that opens them could run anything "
            "inside",
            offset=0,
        )
    elif kind == "onnx":
        _scan_onnx(stream, reader, ctx, size, file_path)
    elif kind == "safetensors":
        check_safetensors(reader, ctx, size)
    elif kind == "gguf":
        check_gguf(reader, ctx, size)


def _member_scanner(stream: IO[bytes], ctx: ScanContext, size: int | None) -> None:
    scan_stream(stream, ctx, size)


class _Replay:
    """A stream that first returns what a Reader has buffered, then the rest."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader

    def read(self, n: int = -1, /) -> bytes:
        data = self._reader.peek(n if n > 0 else 1 << 20)
        self._reader.skip(len(data))
        return data


def _seekable(stream: Any, reader: Reader, ctx: ScanContext) -> IO[bytes]:
    """zip/tar need random access: the top-level file seeks; anything nested is spooled.

    A nested member *can* seek (``zipfile``'s member streams do), but seeking backwards in a
    compressed member decompresses it again from the start, once per seek: that is how a
    14.8 KB nest of zips cost 278 s. The spool is written once, from bytes already charged
    to the budget where they were decompressed or read.
    """
    if ctx.member is None and reader.offset == 0 and getattr(stream, "seekable", lambda: False)():
        stream.seek(0)
        return stream  # type: ignore[no-any-return]
    spool = tempfile.SpooledTemporaryFile(max_size=64 << 20)  # noqa: SIM115 (caller's lifetime)
    replay = _Replay(reader)
    while chunk := replay.read(1 << 20):
        spool.write(chunk)
    spool.seek(0)
    return spool


def _scan_onnx(
    stream: Any, reader: Reader, ctx: ScanContext, size: int | None, file_path: str | None
) -> None:
    model_dir = os.path.dirname(file_path) if file_path else None
    if file_path is not None and ctx.member is None:
        fileno = stream.fileno()
        if size == 0:
            return
        with mmap.mmap(fileno, 0, access=mmap.ACCESS_READ) as mapped:
            scan_onnx(memoryview(mapped), ctx, model_dir=model_dir)
        return
    if size is not None and size > _MAX_ONNX_MEMBER:
        ctx.add(
            "archive-unscannable", "ONNX model inside an archive is too large to scan", offset=0
        )
        return
    data = _Replay(reader).read(_MAX_ONNX_MEMBER + 1)
    scan_onnx(data, ctx, model_dir=None)


# --------------------------------------------------------------------------- files


def _iter_files(path: str) -> Iterator[str | FileScan]:
    """Regular files under ``path`` (symlinks are not followed), in name order.

    A folder that cannot be listed is yielded as a ``FileScan`` error naming that folder,
    and the walk goes on: one unreadable subfolder must neither hide the rest of the tree
    nor be blamed on the folder the scan started from.
    """
    try:
        st = os.lstat(path)
    except OSError as exc:
        yield FileScan(path=path, format="?", size=0, error=f"cannot stat: {exc.strerror}")
        return
    if not stat.S_ISDIR(st.st_mode):
        yield path  # a regular file, or reported by scan_file
        return
    stack = [path]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            yield FileScan(
                path=directory,
                format="directory",
                size=0,
                error=f"cannot list folder: {exc.strerror}; its files were not scanned",
            )
            continue
        subfolders = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False  # scan_file reports what it is
            if is_dir:
                subfolders.append(entry.path)
            else:
                yield entry.path
        stack.extend(reversed(subfolders))


def scan_file(
    path: str, *, policy: ScanPolicy, allowlist: Allowlist, display: str | None = None
) -> FileScan:
    """Scan one file; I/O problems and scanner bugs become ``FileScan.error``."""
    shown = display or path
    try:
        st = os.lstat(path)
    except OSError as exc:
        return FileScan(path=shown, format="?", size=0, error=f"cannot stat: {exc.strerror}")
    if stat.S_ISLNK(st.st_mode):
        return FileScan(
            path=shown,
            format="symlink",
            size=0,
            error="symlink not followed (scan its target instead)",
        )
    if not stat.S_ISREG(st.st_mode):
        return FileScan(path=shown, format="special", size=0, error="not a regular file")
    ctx = _top_context(shown, policy, allowlist, st.st_size)
    try:
        with open(path, "rb", buffering=0) as f:
            _scan_within_budget(f, ctx, st.st_size, file_path=path)
    except OSError as exc:
        return FileScan(
            path=shown,
            format=_fmt(ctx),
            size=st.st_size,
            findings=tuple(ctx.findings),
            error=f"read error: {exc.strerror}",
        )
    except RecursionError:
        ctx.add("nesting-too-deep", "structure nested too deeply to scan", offset=None)
    except Exception as exc:  # a scanner bug must not turn into "clean"
        return FileScan(
            path=shown,
            format=_fmt(ctx),
            size=st.st_size,
            findings=tuple(ctx.findings),
            error=f"could not scan ({type(exc).__name__}: {exc})",
        )
    return FileScan(
        path=shown,
        format=_fmt(ctx),
        size=st.st_size,
        findings=tuple(ctx.findings),
        expanded=ctx.budget.expanded,
    )


def _top_context(name: str, policy: ScanPolicy, allowlist: Allowlist, size: int) -> ScanContext:
    budget = Budget(limit=policy.expansion_budget(size))
    return ScanContext(path=name, policy=policy, allowlist=allowlist, budget=budget)


def _scan_within_budget(
    stream: Any, ctx: ScanContext, size: int, *, file_path: str | None = None
) -> None:
    """Scan a top-level file; running out of budget ends it with an ``archive-bomb``."""
    try:
        scan_stream(stream, ctx, size, file_path=file_path)
    except BudgetExceeded as exc:
        ctx.findings.append(
            Finding(
                path=ctx.path,
                member=exc.member,
                offset=None,
                rule="archive-bomb",
                message=f"expansion budget exceeded: more than {exc.limit} bytes decompressed "
                f"or read from archive members for a {size}-byte file; the rest cannot be "
                "judged, so the file is not clean (raise the budget with --max-expansion "
                "only for a file you trust)",
            )
        )


def _fmt(ctx: ScanContext) -> str:
    if not ctx.formats:
        return "?"
    top = ctx.formats[0]
    if top == "zip" and "pickle" in ctx.formats[1:]:
        return "zip+pickle"
    return top


def scan_paths(
    paths: Sequence[str], *, policy: ScanPolicy | None = None, display_root: str | None = None
) -> ScanReport:
    """Scan files and directories (recursively); see :class:`ScanReport` for the verdict."""
    policy = policy or ScanPolicy()
    allowlist = make_allowlist(policy)
    results: list[FileScan] = []
    for path in paths:
        for item in _iter_files(path):
            if isinstance(item, FileScan):
                results.append(item)
                continue
            display = os.path.relpath(item, display_root) if display_root else item
            results.append(scan_file(item, policy=policy, allowlist=allowlist, display=display))
    return ScanReport(files=tuple(results))


def scan_bytes(
    data: bytes, *, name: str = "<bytes>", policy: ScanPolicy | None = None
) -> ScanReport:
    """Scan an in-memory blob (tests, webhook payloads)."""
    policy = policy or ScanPolicy()
    ctx = _top_context(name, policy, make_allowlist(policy), len(data))
    _scan_within_budget(io.BytesIO(data), ctx, len(data))
    scan = FileScan(
        path=name,
        format=_fmt(ctx),
        size=len(data),
        findings=tuple(ctx.findings),
        expanded=ctx.budget.expanded,
    )
    return ScanReport(files=(scan,))


__all__ = ["scan_bytes", "scan_file", "scan_paths", "scan_stream"]
