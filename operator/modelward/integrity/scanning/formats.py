"""Decide a file's format from its first bytes, never from its name.

A pickle named ``config.json``, a PyTorch zip named ``model.safetensors`` or a gzip named
``weights.bin`` is scanned as what it is. Formats that can carry code (pickle, the archives
and compressions around it, NumPy object arrays, ONNX external references) are recognised by
structure; anything else is data.
"""

from __future__ import annotations

from typing import Final

from modelward.integrity.scanning.pickle_scan import looks_like_pickle

#: How much of a file's start we look at.
HEAD: Final = 1 << 16

_MAGICS: Final[tuple[tuple[bytes, str], ...]] = (
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (b"\x93NUMPY", "npy"),
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"Rar!\x1a\x07", "rar"),
    (b"GGUF", "gguf"),
)

#: Formats that cannot run code when loaded (for the report only).
DATA_FORMATS: Final = frozenset({"safetensors", "gguf", "text", "data", "empty"})


def sniff(head: bytes, size: int | None) -> str:
    """The format of a stream starting with ``head`` (at most :data:`HEAD` bytes)."""
    if not head:
        return "empty"
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    if head.startswith(b"BZh") and len(head) > 3 and head[3:4] in b"123456789":
        return "bz2"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if len(head) >= 3 and head[0] == 0x80 and head[1] in (2, 3, 4, 5) and looks_like_pickle(head):
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        # a header that does not fit the file is still safetensors if it reads like one
        # (then its check says what is wrong); other data with a "{" at byte 8 is data
        if (size is None or 2 <= n <= size - 8) or any(
            key in head[9:4096] for key in (b'"dtype"', b'"data_offsets"', b'"__metadata__"')
        ):
            return "safetensors"
    if looks_like_onnx(head):
        return "onnx"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib?"
    if head.startswith(b"\x5d\x00\x00"):
        return "lzma?"
    return "unknown"


def looks_like_onnx(head: bytes) -> bool:
    """A ModelProto starts with ir_version (field 1, varint), then known fields."""
    if len(head) < 4 or head[0] != 0x08 or not 1 <= head[1] <= 32:
        return False
    # the next tag must be one ModelProto defines (2-8, 14, 20, 25 as length-delimited)
    return head[2] in (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72)


def is_text(head: bytes) -> bool:
    """UTF-8 without control characters other than whitespace: text, not a binary format."""
    sample = head[:4096]
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 4:
            return False
    return not any(b < 9 or 13 < b < 32 for b in sample)
