"""safetensors and GGUF: the weight formats that carry no code, checked without loading.

Neither format can run code, so a clean verdict means "well formed": what a loader would
trust blindly is checked here first, because a loader that trusts it is the next target
(out-of-range offsets read beyond the file, overlapping tensors alias each other, a string
length of 2**63 asks the loader for that much memory). Everything is bounded by the file's
size, read once and sequentially; tensor data is never read. What is checked:

safetensors
    the header length fits the file (and 100 MiB); the header is a JSON object without
    duplicate keys; ``__metadata__`` maps strings to strings; each tensor has a known dtype,
    a shape of non-negative integers and ``data_offsets`` whose length is exactly
    ``prod(shape) x dtype size``; the tensors neither overlap nor leave holes and end where
    the file ends (the reference loader refuses the same files).
GGUF (versions 2 and 3)
    counts, string and array lengths fit in what is left of the file; metadata value types
    are known and arrays nest at most :data:`MAX_GGUF_NESTING` deep; ``general.alignment``
    is a power of two; each tensor has at most 4 dimensions, a known ggml type whose block
    size divides its first dimension, an aligned offset, and bytes that lie inside the
    file's data section without overlapping another tensor's.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any, Final

from modelward.integrity.scanning.context import ScanContext
from modelward.integrity.scanning.reader import Reader, Truncated

MAX_SAFETENSORS_HEADER: Final = 100 << 20

#: safetensors dtypes and their sizes in bits (F4/F6 are packed).
SAFETENSORS_DTYPE_BITS: Final[Mapping[str, int]] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}

#: ggml tensor types: (elements per block, bytes per block), as ``gguf.GGML_QUANT_SIZES``
#: (a test keeps them equal to the installed ``gguf`` package's table).
GGML_BLOCKS: Final[Mapping[int, tuple[int, int]]] = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 40),  # Q8_1
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    16: (256, 66),  # IQ2_XXS
    17: (256, 74),  # IQ2_XS
    18: (256, 98),  # IQ3_XXS
    19: (256, 50),  # IQ1_S
    20: (32, 18),  # IQ4_NL
    21: (256, 110),  # IQ3_S
    22: (256, 82),  # IQ2_S
    23: (256, 136),  # IQ4_XS
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    29: (256, 56),  # IQ1_M
    30: (1, 2),  # BF16
    34: (256, 54),  # TQ1_0
    35: (256, 66),  # TQ2_0
    39: (32, 17),  # MXFP4
    40: (64, 36),  # NVFP4
    41: (128, 18),  # Q1_0
}

#: GGUF metadata value types with a fixed size (8: string and 9: array are variable).
_GGUF_FIXED: Final[Mapping[int, int]] = {
    0: 1,
    1: 1,
    2: 2,
    3: 2,
    4: 4,
    5: 4,
    6: 4,
    7: 1,
    10: 8,
    11: 8,
    12: 8,
}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
MAX_GGUF_NESTING: Final = 2
MAX_GGUF_KEY: Final = 65535
MAX_GGUF_DIMS: Final = 4
MAX_GGUF_NAME: Final = 1024
#: Array items across all metadata: bounds the walk's time whatever the file claims.
MAX_GGUF_ITEMS: Final = 16_000_000
DEFAULT_GGUF_ALIGNMENT: Final = 32


class _Bad(Exception):
    """A structural problem at ``offset`` (becomes one finding)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


# --------------------------------------------------------------------------- safetensors


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:80]!r}")
        out[key] = value
    return out


def check_safetensors(reader: Reader, ctx: ScanContext, size: int | None) -> None:
    """Report (``safetensors-malformed``) the first thing a loader should refuse."""
    try:
        _safetensors(reader, size)
    except _Bad as exc:
        ctx.add(
            "safetensors-malformed", f"{exc}; no loader should trust this file", offset=exc.offset
        )
    except Truncated:
        ctx.add("safetensors-malformed", "the file ends inside its header", offset=reader.offset)


def _safetensors(reader: Reader, size: int | None) -> None:
    n = int.from_bytes(reader.read(8), "little")
    if n > MAX_SAFETENSORS_HEADER:
        raise _Bad(f"header length {n} is over the {MAX_SAFETENSORS_HEADER}-byte limit", 0)
    if size is not None and n > size - 8:
        raise _Bad(f"header length {n} runs past the end of the {size}-byte file", 0)
    try:
        header = json.loads(reader.read(n), object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise _Bad("header JSON is nested too deeply", 8) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Bad(f"header is not valid JSON ({exc})", 8) from None
    if not isinstance(header, dict):
        raise _Bad("header is not a JSON object", 8)
    data_size = None if size is None else size - 8 - n
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise _Bad("__metadata__ must map strings to strings", 8)
            continue
        spans.append(_safetensors_tensor(name, entry, data_size))
    spans.sort()
    end = 0
    for begin, stop, name in spans:
        if begin < end:
            raise _Bad(f"tensor {name[:80]!r} overlaps the previous tensor's bytes", 8)
        if begin > end:
            raise _Bad(f"a hole of {begin - end} bytes before tensor {name[:80]!r}", 8)
        end = stop
    if data_size is not None and end != data_size:
        raise _Bad(f"tensors cover {end} bytes but the data section holds {data_size}", 8)


def _safetensors_tensor(name: str, entry: Any, data_size: int | None) -> tuple[int, int, str]:
    shown = repr(name[:80])
    if not isinstance(entry, dict):
        raise _Bad(f"tensor {shown} is not an object", 8)
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in SAFETENSORS_DTYPE_BITS:
        raise _Bad(f"tensor {shown} has unknown dtype {str(dtype)[:40]!r}", 8)
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _Bad(f"tensor {shown} has a shape that is not a list of sizes", 8)
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        and 0 <= offsets[0] <= offsets[1]
    ):
        raise _Bad(f"tensor {shown} has invalid data_offsets", 8)
    begin, end = offsets
    if data_size is not None and end > data_size:
        raise _Bad(f"tensor {shown} ends at byte {end} of a {data_size}-byte data section", 8)
    bits = SAFETENSORS_DTYPE_BITS[str(dtype)]
    count = 1
    for d in shape:
        count *= d
        if count * bits > (end - begin) * 8:
            break  # no need to multiply a hostile shape any further
    if count * bits != (end - begin) * 8:
        raise _Bad(
            f"tensor {shown}: shape {shape[:8]} of {dtype} does not fill its "
            f"{end - begin} bytes exactly",
            8,
        )
    return begin, end, name


# --------------------------------------------------------------------------- GGUF


class _Gguf:
    """One sequential pass over a GGUF header, metadata and tensor table."""

    def __init__(self, reader: Reader, size: int | None) -> None:
        self.r = reader
        self.size = size
        self.alignment = DEFAULT_GGUF_ALIGNMENT
        self.total_items = 0

    def left(self) -> int | None:
        return None if self.size is None else self.size - self.r.offset

    def fits(self, n: int, what: str, at: int) -> None:
        left = self.left()
        if left is not None and n > left:
            raise _Bad(f"{what} needs {n} bytes but only {left} are left in the file", at)

    def u32(self) -> int:
        value: int = struct.unpack("<I", self.r.read(4))[0]
        return value

    def u64(self) -> int:
        value: int = struct.unpack("<Q", self.r.read(8))[0]
        return value

    def string(self, what: str, limit: int) -> bytes:
        """A GGUF string of at most ``limit`` bytes (keys, tensor names)."""
        at = self.r.offset
        n = self.u64()
        self.fits(n, what, at)
        if n > limit:
            raise _Bad(f"{what} of {n} bytes is over the {limit}-byte limit", at)
        return self.r.read(n)

    def skip_string(self) -> None:
        at = self.r.offset
        n = self.u64()
        self.fits(n, "string value", at)
        self.r.skip(n)

    def items(self, count: int, at: int) -> None:
        self.total_items += count
        if self.total_items > MAX_GGUF_ITEMS:
            raise _Bad(
                f"metadata arrays hold more than {MAX_GGUF_ITEMS} items in all "
                "(a real tokenizer holds a few hundred thousand)",
                at,
            )

    def value(self, kind: int, depth: int, at: int) -> Any:
        if kind in _GGUF_FIXED:
            return self.r.read(_GGUF_FIXED[kind])
        if kind == _GGUF_STRING:
            self.skip_string()
            return None
        if kind != _GGUF_ARRAY:
            raise _Bad(f"unknown metadata value type {kind}", at)
        if depth >= MAX_GGUF_NESTING:
            raise _Bad(f"metadata arrays nested more than {MAX_GGUF_NESTING} deep", at)
        item, count = self.u32(), self.u64()
        self.items(count, at)
        if item in _GGUF_FIXED:
            self.fits(count * _GGUF_FIXED[item], "metadata array", at)
            self.r.skip(count * _GGUF_FIXED[item])
            return None
        if item not in (_GGUF_STRING, _GGUF_ARRAY):
            raise _Bad(f"unknown metadata array item type {item}", at)
        self.fits(count * 8, "metadata array", at)  # each item is at least a length
        for _ in range(count):
            self.value(item, depth + 1, self.r.offset)
        return None

    def check(self) -> None:
        r = self.r
        r.read(4)  # magic, already sniffed
        version = self.u32()
        if version not in (2, 3):
            raise _Bad(f"GGUF version {version} (modelward checks versions 2 and 3)", 4)
        tensors, kvs = self.u64(), self.u64()
        # the smallest metadata entry takes 13 bytes and the smallest tensor entry 24
        self.fits(kvs * 13, f"{kvs} metadata entries", 16)
        self.fits(tensors * 24, f"{tensors} tensor entries", 8)
        for _ in range(kvs):
            at = r.offset
            key = self.string("metadata key", MAX_GGUF_KEY)
            kind = self.u32()
            value = self.value(kind, 0, at)
            if key == b"general.alignment":
                alignment = int.from_bytes(value, "little") if kind == 4 else 0
                if alignment <= 0 or alignment & (alignment - 1):
                    raise _Bad("general.alignment is not a power-of-two uint32", at)
                self.alignment = alignment
        spans = []
        names: set[bytes] = set()
        for _ in range(tensors):
            spans.append(self.tensor(names))
        start = -(-r.offset // self.alignment) * self.alignment
        data_size = None if self.size is None else self.size - start
        if data_size is not None and data_size < 0 and spans:
            raise _Bad("the tensor data section starts past the end of the file", r.offset)
        spans.sort()
        end = 0
        for begin, stop, name in spans:
            if begin < end:
                raise _Bad(f"tensor {name!r} overlaps the previous tensor's bytes", start + begin)
            if data_size is not None and stop > data_size:
                raise _Bad(
                    f"tensor {name!r} ends at byte {stop} of a {data_size}-byte data section",
                    start + begin,
                )
            end = stop

    def tensor(self, names: set[bytes]) -> tuple[int, int, str]:
        at = self.r.offset
        raw = self.string("tensor name", MAX_GGUF_NAME)
        name = raw[:80].decode("utf-8", "replace")
        if raw in names:
            raise _Bad(f"tensor name {name!r} appears twice", at)
        names.add(raw)
        n_dims = self.u32()
        if n_dims > MAX_GGUF_DIMS:
            raise _Bad(f"tensor {name!r} has {n_dims} dimensions (at most {MAX_GGUF_DIMS})", at)
        dims = [self.u64() for _ in range(n_dims)]
        kind, offset = self.u32(), self.u64()
        if kind not in GGML_BLOCKS:
            raise _Bad(f"tensor {name!r} has unknown ggml type {kind}", at)
        block, block_bytes = GGML_BLOCKS[kind]
        if dims and dims[0] % block:
            raise _Bad(
                f"tensor {name!r}: first dimension {dims[0]} is not a multiple of {block}", at
            )
        if offset % self.alignment:
            raise _Bad(f"tensor {name!r} offset {offset} is not {self.alignment}-byte aligned", at)
        count = 1
        for d in dims:
            count *= d
        nbytes = count // block * block_bytes
        limit = self.size if self.size is not None else 1 << 63
        if nbytes > limit:
            raise _Bad(f"tensor {name!r} claims {nbytes} bytes, more than the file holds", at)
        return offset, offset + nbytes, name


def check_gguf(reader: Reader, ctx: ScanContext, size: int | None) -> None:
    """Report (``gguf-malformed``) the first thing a loader should refuse."""
    try:
        _Gguf(reader, size).check()
    except _Bad as exc:
        ctx.add("gguf-malformed", f"{exc}; no loader should trust this file", offset=exc.offset)
    except Truncated:
        ctx.add(
            "gguf-malformed",
            "the file ends inside its header or tensor table",
            offset=reader.offset,
        )


__all__ = ["GGML_BLOCKS", "SAFETENSORS_DTYPE_BITS", "check_gguf", "check_safetensors"]
