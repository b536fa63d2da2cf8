"""NumPy ``.npy`` files: a header, then raw data, or a pickle for object arrays.

``numpy.load`` refuses object arrays unless ``allow_pickle=True``, but plenty of code passes
it, and the pickle inside is an ordinary code-execution vector. An object array is always
reported and its pickle is scanned; numeric arrays must hold exactly the bytes their header
announces (anything after them is hidden data).
"""

from __future__ import annotations

import ast
import re
from typing import Any, Final

from modelward.integrity.scanning.context import ScanContext
from modelward.integrity.scanning.pickle_scan import scan_pickle_stream
from modelward.integrity.scanning.reader import Reader, Truncated

MAX_HEADER: Final = 1 << 16
_SIMPLE = re.compile(r"[<>|=]?([biufcmMOSUV?])(\d*)(\[\w+\])?")


def _itemsize(descr: Any) -> int | None:
    """Bytes per element for a descr, or None if not computable (structured, odd)."""
    if isinstance(descr, str):
        m = _SIMPLE.fullmatch(descr)
        if not m:
            return None
        kind, size = m.group(1), m.group(2)
        if kind == "O":
            return None
        if kind in "b?" and not size:
            return 1
        return int(size) * (4 if kind == "U" else 1) if size else None
    if isinstance(descr, list):
        total = 0
        for field in descr:
            if not isinstance(field, tuple) or len(field) < 2:
                return None
            sub = _itemsize(field[1])
            if sub is None:
                return None
            count = 1
            if len(field) > 2 and isinstance(field[2], tuple):
                for d in field[2]:
                    count *= d if isinstance(d, int) else 1
            total += sub * count
        return total
    return None


def _has_object(descr: Any) -> bool:
    if isinstance(descr, str):
        m = _SIMPLE.fullmatch(descr)
        return m is not None and m.group(1) == "O"
    if isinstance(descr, list):
        return any(isinstance(f, tuple) and len(f) >= 2 and _has_object(f[1]) for f in descr)
    return False


def scan_npy(reader: Reader, ctx: ScanContext) -> None:
    """Validate a ``.npy`` stream; scan the pickle of object arrays."""
    try:
        magic = reader.read(8)
        major = magic[6]
        if major == 1:
            hlen = int.from_bytes(reader.read(2), "little")
        elif major in (2, 3):
            hlen = int.from_bytes(reader.read(4), "little")
        else:
            ctx.add("numpy-malformed", f"unknown .npy format version {major}", offset=6)
            return
        if hlen > MAX_HEADER:
            ctx.add("numpy-malformed", f"header of {hlen} bytes exceeds {MAX_HEADER}", offset=8)
            return
        text = reader.read(hlen).decode("utf-8" if major == 3 else "latin-1")
    except (Truncated, UnicodeDecodeError) as exc:
        ctx.add("numpy-malformed", f"truncated or undecodable header ({exc})", offset=0)
        return
    try:
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        ctx.add("numpy-malformed", "header is not a Python literal dict", offset=10)
        return
    if not isinstance(header, dict) or not {"descr", "shape", "fortran_order"} <= set(header):
        ctx.add("numpy-malformed", "header lacks descr/shape/fortran_order", offset=10)
        return
    descr, shape = header["descr"], header["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        ctx.add("numpy-malformed", f"invalid shape {shape!r}", offset=10)
        return
    data_at = reader.offset
    if _has_object(descr):
        ctx.add(
            "numpy-object-array",
            f"array of dtype {descr!r} holds Python objects: "
            "numpy.load(allow_pickle=True) unpickles it (pickle scanned)",
            offset=data_at,
        )
        scan_pickle_stream(reader, ctx)
        return
    itemsize = _itemsize(descr)
    if itemsize is None:
        reader.drain()
        return
    count = 1
    for d in shape:
        count *= d
    expected = count * itemsize
    try:
        reader.skip(expected)
    except Truncated:
        ctx.add(
            "numpy-malformed",
            f"data shorter than the {expected} bytes the header announces (truncated)",
            offset=data_at,
        )
        return
    extra = reader.drain()
    if extra:
        ctx.add("trailing-data", f"{extra} bytes after the array data", offset=data_at + expected)
