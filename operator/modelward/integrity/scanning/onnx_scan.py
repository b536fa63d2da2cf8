"""ONNX models, read with a small protobuf wire-format reader (no ``onnx`` package).

ONNX cannot embed Python, but a model can make the runtime do two dangerous things: read
arbitrary files through *external data* (``location`` = ``../../etc/shadow`` or an absolute
path, then exfiltrate it through outputs) and load native code through *custom operator
domains* (a domain ONNX Runtime does not implement needs a registered shared library). We
walk the model, every graph nested in node attributes (If/Loop/Scan bodies), training info
and local functions, and check both. Tensor payloads (``raw_data``) are skipped, not read:
the file is memory-mapped and only the structure is touched.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from typing import Final

from modelward.integrity.scanning.context import DEFAULT_ONNX_DOMAINS, ScanContext

MAX_NESTING: Final = 64

Field = tuple[int, int, int, int]  # (field number, wire type, value or start, end)


class ProtobufError(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def _varint(buf: bytes | memoryview, i: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if i >= end:
            raise ProtobufError("truncated varint", i)
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long", i)


def fields(buf: bytes | memoryview, start: int, end: int) -> Iterator[Field]:
    """Fields of the message in ``buf[start:end]``: length-delimited ones as (start, end)."""
    i = start
    while i < end:
        key, i = _varint(buf, i, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0", i)
        if wire == 0:
            value, i = _varint(buf, i, end)
            yield number, wire, value, i
        elif wire == 1:
            if i + 8 > end:
                raise ProtobufError("truncated fixed64", i)
            yield number, wire, i, i + 8
            i += 8
        elif wire == 2:
            length, i = _varint(buf, i, end)
            if i + length > end:
                raise ProtobufError(f"length {length} runs past the message end", i)
            yield number, wire, i, i + length
            i += length
        elif wire == 5:
            if i + 4 > end:
                raise ProtobufError("truncated fixed32", i)
            yield number, wire, i, i + 4
            i += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}", i)


def _text(buf: bytes | memoryview, start: int, end: int) -> str:
    return bytes(buf[start:end]).decode("utf-8", "replace")


class OnnxScanner:
    def __init__(
        self,
        buf: bytes | memoryview,
        ctx: ScanContext,
        *,
        model_dir: str | None,
        allowed_domains: frozenset[str],
    ) -> None:
        self.buf = buf
        self.ctx = ctx
        self.model_dir = model_dir
        self.domains = allowed_domains
        self.local_functions: set[tuple[str, str]] = set()

    def scan(self) -> None:
        buf = self.buf
        top = list(fields(buf, 0, len(buf)))
        if not any(n == 7 and w == 2 for n, w, _, _ in top):
            raise ProtobufError("no graph (not an ONNX ModelProto)", 0)
        if not any(n == 8 and w == 2 for n, w, _, _ in top):
            raise ProtobufError("no opset_import (truncated or not a valid ONNX model)", 0)
        for number, wire, start, end in top:  # local functions first: nodes may call them
            if number == 25 and wire == 2:
                name = domain = ""
                for n, w, s, e in fields(buf, start, end):
                    if n == 1 and w == 2:
                        name = _text(buf, s, e)
                    elif n == 10 and w == 2:
                        domain = _text(buf, s, e)
                self.local_functions.add((domain, name))
        for number, wire, start, end in top:
            if wire != 2:
                continue
            if number == 8:
                self._opset(start, end)
            elif number == 7:
                self._graph(start, end, 0)
            elif number == 20:
                for n, w, s, e in fields(buf, start, end):
                    if n in (1, 2) and w == 2:
                        self._graph(s, e, 1)
            elif number == 25:
                self._function(start, end)

    def _opset(self, start: int, end: int) -> None:
        for n, w, s, e in fields(self.buf, start, end):
            if n == 1 and w == 2:
                self._domain(_text(self.buf, s, e), None, s)

    def _domain(self, domain: str, op: str | None, at: int) -> None:
        if domain in self.domains or (op is not None and (domain, op) in self.local_functions):
            return
        if op is None and any(d == domain for d, _ in self.local_functions):
            return  # the model imports the domain of its own local functions
        what = f"operator {op!r} of" if op else "opset import of"
        self.ctx.add(
            "onnx-custom-domain",
            f"{what} custom domain {domain!r}: running it needs "
            "a native custom-op library (allow with --allow-onnx-domain)",
            offset=at,
            global_name=f"{domain}::{op}" if op else domain,
        )

    def _graph(self, start: int, end: int, depth: int) -> None:
        if depth > MAX_NESTING:
            raise ProtobufError("graphs nested too deeply", start)
        for n, w, s, e in fields(self.buf, start, end):
            if w != 2:
                continue
            if n == 1:
                self._node(s, e, depth)
            elif n == 5:
                self._tensor(s, e)
            elif n == 15:
                self._sparse(s, e)

    def _function(self, start: int, end: int) -> None:
        for n, w, s, e in fields(self.buf, start, end):
            if w == 2 and n == 7:
                self._node(s, e, 1)
            elif w == 2 and n == 9:
                self._opset(s, e)

    def _node(self, start: int, end: int, depth: int) -> None:
        op = domain = ""
        for n, w, s, e in fields(self.buf, start, end):
            if w != 2:
                continue
            if n == 4:
                op = _text(self.buf, s, e)
            elif n == 7:
                domain = _text(self.buf, s, e)
            elif n == 5:
                self._attribute(s, e, depth)
        self._domain(domain, op, start)

    def _attribute(self, start: int, end: int, depth: int) -> None:
        for n, w, s, e in fields(self.buf, start, end):
            if w != 2:
                continue
            if n in (6, 11):  # g, graphs
                self._graph(s, e, depth + 1)
            elif n in (5, 10):  # t, tensors
                self._tensor(s, e)
            elif n in (22, 23):  # sparse_tensor(s)
                self._sparse(s, e)

    def _sparse(self, start: int, end: int) -> None:
        for n, w, s, e in fields(self.buf, start, end):
            if w == 2 and n in (1, 2):
                self._tensor(s, e)

    def _tensor(self, start: int, end: int) -> None:
        external = False
        name = ""
        entries: dict[str, str] = {}
        for n, w, s, e in fields(self.buf, start, end):
            if n == 14 and w == 0 and s == 1:
                external = True
            elif n == 8 and w == 2:
                name = _text(self.buf, s, e)
            elif n == 13 and w == 2:
                key = value = ""
                for kn, kw, ks, ke in fields(self.buf, s, e):
                    if kw == 2 and kn == 1:
                        key = _text(self.buf, ks, ke)
                    elif kw == 2 and kn == 2:
                        value = _text(self.buf, ks, ke)
                entries[key] = value
        if external or entries:
            self._external(name, entries, start)

    def _external(self, tensor: str, entries: dict[str, str], at: int) -> None:
        location = entries.get("location")
        if location is None:
            self.ctx.add(
                "onnx-external-data",
                f"tensor {tensor!r} uses external data without a location",
                offset=at,
            )
            return
        norm = posixpath.normpath(location.replace("\\", "/"))
        bad = (
            location.startswith(("/", "\\"))
            or (len(location) > 1 and location[1] == ":")
            or "://" in location
            or norm == ".."
            or norm.startswith("../")
            or "\x00" in location
        )
        if not bad and self.model_dir is not None:
            real_dir = os.path.realpath(self.model_dir)
            target = os.path.realpath(os.path.join(real_dir, norm))
            bad = os.path.commonpath([real_dir, target]) != real_dir
        if bad:
            self.ctx.add(
                "onnx-external-data",
                f"tensor {tensor!r} reads external data from "
                f"{location!r}, outside the model directory",
                offset=at,
                global_name=location,
            )


def scan_onnx(buf: bytes | memoryview, ctx: ScanContext, *, model_dir: str | None) -> None:
    """Scan an ONNX ModelProto held in ``buf`` (bytes or a memory map)."""
    scanner = OnnxScanner(
        buf,
        ctx,
        model_dir=model_dir,
        allowed_domains=DEFAULT_ONNX_DOMAINS | ctx.policy.extra_onnx_domains,
    )
    try:
        scanner.scan()
    except ProtobufError as exc:
        ctx.add("onnx-malformed", str(exc), offset=exc.offset)
