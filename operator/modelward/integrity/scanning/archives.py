"""Archives and compression: zip (PyTorch, npz), tar (legacy PyTorch), gzip/bz2/xz/zlib.

Every member is scanned by content, whatever its name (CVE-2025-1889 hid a pickle in a
member picklescan skipped for its extension). Corruption that a lenient loader tolerates but
a scanner might trip over is itself a finding: bad CRCs, names that differ between the
central directory and the local header, duplicate names, encrypted members. Expansion is
bounded in ratio, and every byte decompressed or read from a member is charged to the
top-level file's expansion budget (:meth:`ScanPolicy.expansion_budget`), so a zip bomb, an
archive of overlapping members or a nest of archives costs a finding, not the node's memory
or minutes of CPU.

PyTorch storages (``<prefix>/data/<key>`` next to ``<prefix>/data.pkl``) are raw tensor
bytes that ``torch.load`` never unpickles; they are not read at all, which is also what
keeps scanning a 40 GB checkpoint fast.
"""

from __future__ import annotations

import bz2
import lzma
import re
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from typing import IO, Any, Final

from modelward.integrity.scanning.context import MEMBER_COST, ScanContext
from modelward.integrity.scanning.pickle_scan import (
    Global,
    Malformed,
    PickleWalker,
    continue_after_stop,
    scan_pickle_stream,
)
from modelward.integrity.scanning.reader import CHUNK, Reader, Truncated

ScanMember = Callable[[IO[bytes], ScanContext, int | None], None]

_STORAGE: Final = re.compile(r"(.*/)?data/\d+")
_BOMB_MIN: Final = 64 << 20
#: Element sizes of PyTorch storage types (legacy formats store element counts).
STORAGE_ELEMENT_SIZES: Final = {
    "FloatStorage": 4,
    "DoubleStorage": 8,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "ComplexFloatStorage": 8,
    "ComplexDoubleStorage": 16,
    "QInt8Storage": 1,
    "QUInt8Storage": 1,
    "QInt32Storage": 4,
    "QUInt4x2Storage": 1,
    "QUInt2x4Storage": 1,
    "UntypedStorage": 1,
}
LEGACY_MAGIC: Final = 0x1950A86A20F9469CFC6C


# --------------------------------------------------------------------------- zip


def scan_zip(f: IO[bytes], ctx: ScanContext, scan_member: ScanMember) -> None:
    try:
        archive = zipfile.ZipFile(f)
        infos = archive.infolist()
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        ValueError,
        EOFError,
        NotImplementedError,
    ) as exc:
        ctx.add("archive-malformed", f"zip cannot be read: {exc}", offset=0)
        return
    if len(infos) > ctx.policy.max_members:
        ctx.add(
            "archive-bomb",
            f"zip has {len(infos)} members (limit {ctx.policy.max_members})",
            offset=0,
        )
        return
    dupes = [n for n, c in Counter(i.filename for i in infos).items() if c > 1]
    if dupes:
        ctx.add(
            "archive-malformed",
            f"duplicate member names {dupes[:5]}: loaders disagree about which one counts",
            offset=0,
        )
    torch_prefixes = {
        i.filename[: -len("data.pkl")]
        for i in infos
        if i.filename == "data.pkl" or i.filename.endswith("/data.pkl")
    }
    for info in infos:
        if info.is_dir():
            continue
        if (
            torch_prefixes
            and _STORAGE.fullmatch(info.filename)
            and info.filename.rsplit("data/", 1)[0] in torch_prefixes
        ):
            continue  # raw tensor bytes, never unpickled by torch.load
        member = ctx.nested(info.filename)
        if info.flag_bits & 0x1:
            member.add("archive-unscannable", "member is encrypted", offset=info.header_offset)
            continue
        if info.file_size > _BOMB_MIN and info.file_size > ctx.policy.max_ratio * max(
            1, info.compress_size
        ):
            member.add(
                "archive-bomb",
                f"expands {info.compress_size} -> {info.file_size} bytes",
                offset=info.header_offset,
            )
            continue
        # Stored members count too: members may overlap, so reading them all can cost far
        # more than the archive's size (the non-recursive zip bomb).
        member.charge(info.file_size + MEMBER_COST)
        try:
            with archive.open(info) as stream:
                scan_member(stream, member, info.file_size)
                while stream.read(CHUNK):  # read to the end so the CRC is checked
                    pass
        except zipfile.BadZipFile as exc:
            member.add("archive-malformed", f"{exc}", offset=info.header_offset)
        except (
            OSError,
            EOFError,
            ValueError,
            NotImplementedError,
            zlib.error,
            lzma.LZMAError,
        ) as exc:
            member.add(
                "archive-malformed", f"member cannot be read: {exc}", offset=info.header_offset
            )


# --------------------------------------------------------------------------- tar


def scan_tar(f: IO[bytes], ctx: ScanContext, scan_member: ScanMember) -> None:
    try:
        archive = tarfile.open(fileobj=f, mode="r:")  # noqa: SIM115 (closed by the caller's file)
        members = archive.getmembers()
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        ctx.add("archive-malformed", f"tar cannot be read: {exc}", offset=0)
        return
    if len(members) > ctx.policy.max_members:
        ctx.add("archive-bomb", f"tar has {len(members)} members", offset=0)
        return
    names = {m.name for m in members}
    legacy_torch = {"pickle", "storages", "tensors"} <= names
    for m in sorted(members, key=lambda m: m.name != "storages"):
        if not m.isfile():
            continue
        stream = archive.extractfile(m)
        if stream is None:
            continue
        member = ctx.nested(m.name)
        member.charge(m.size + MEMBER_COST)  # sparse members claim sizes they do not store
        with stream:
            if legacy_torch and m.name == "storages":
                _scan_tar_storages(Reader(stream, offset=m.offset_data), member)
            elif legacy_torch and m.name == "tensors":
                _scan_tar_tensors(Reader(stream, offset=m.offset_data), member)
            else:
                scan_member(stream, member, m.size)


def _load_one(reader: Reader, ctx: ScanContext) -> Any:
    walker = PickleWalker(reader, ctx)
    result = walker.walk()
    return result.value


def _scan_tar_storages(reader: Reader, ctx: ScanContext) -> None:
    """``storages``: count pickle, then (key, location, type) pickle + int64 count + bytes."""
    try:
        count = _load_one(reader, ctx)
        if not isinstance(count, int) or count < 0:
            raise Malformed("storage count is not an integer", reader.offset)
        for _ in range(count):
            at = reader.offset
            args = _load_one(reader, ctx)
            if not (isinstance(args, tuple) and len(args) == 3 and isinstance(args[2], Global)):
                raise Malformed("storage record is not (key, location, type)", at)
            size = STORAGE_ELEMENT_SIZES.get(args[2].name)
            if size is None:
                raise Malformed(f"unknown storage type {args[2].full}", at)
            numel = int.from_bytes(reader.read(8), "little", signed=True)
            if numel < 0:
                raise Malformed("negative storage size", at)
            reader.skip(numel * size)
        _load_one(reader, ctx)  # storage views
    except Malformed as exc:
        ctx.add("malformed-pickle", f"legacy storages: {exc}", offset=exc.offset)
        return
    except Truncated as exc:
        ctx.add("malformed-pickle", f"legacy storages truncated ({exc})", offset=reader.offset)
        return
    if reader.drain():
        ctx.add("trailing-data", "data after the last legacy storage", offset=reader.offset)


def _scan_tar_tensors(reader: Reader, ctx: ScanContext) -> None:
    """``tensors``: count pickle, then per tensor a pickle + ndim + sizes/strides/offset."""
    try:
        count = _load_one(reader, ctx)
        if not isinstance(count, int) or count < 0:
            raise Malformed("tensor count is not an integer", reader.offset)
        for _ in range(count):
            _load_one(reader, ctx)
            ndim = int.from_bytes(reader.read(4), "little", signed=True)
            if not 0 <= ndim <= 64:
                raise Malformed(f"invalid tensor rank {ndim}", reader.offset)
            reader.skip(4 + 16 * ndim + 8)
    except Malformed as exc:
        ctx.add("malformed-pickle", f"legacy tensors: {exc}", offset=exc.offset)
        return
    except Truncated as exc:
        ctx.add("malformed-pickle", f"legacy tensors truncated ({exc})", offset=reader.offset)
        return
    if reader.drain():
        ctx.add("trailing-data", "data after the last legacy tensor", offset=reader.offset)


# --------------------------------------------------------------------------- legacy torch


def scan_legacy_torch(reader: Reader, ctx: ScanContext, first: Any) -> None:
    """After the magic-number pickle: version, sys_info, the object, keys, raw storages."""
    del first
    try:
        for _ in range(2):  # protocol version, sys_info
            PickleWalker(reader, ctx).walk()
        main = PickleWalker(reader, ctx).walk()
        keys = PickleWalker(reader, ctx).walk().value
    except Malformed as exc:
        ctx.add("malformed-pickle", f"legacy PyTorch checkpoint: {exc}", offset=exc.offset)
        return
    sizes: dict[str, int] = {}
    for pid in main.persistent_ids:
        if (
            isinstance(pid, tuple)
            and len(pid) >= 5
            and pid[0] == "storage"
            and isinstance(pid[1], Global)
            and isinstance(pid[2], str)
        ):
            size = STORAGE_ELEMENT_SIZES.get(pid[1].name)
            if size is not None:
                sizes[pid[2]] = size
    if not isinstance(keys, list) or getattr(keys, "truncated", False):
        ctx.add(
            "malformed-pickle",
            "legacy PyTorch storage key list is missing or too long",
            offset=reader.offset,
        )
        return
    try:
        for key in keys:
            at = reader.offset
            if not isinstance(key, str) or key not in sizes:
                raise Malformed(f"storage key {key!r} has no persistent id", at)
            numel = int.from_bytes(reader.read(8), "little", signed=True)
            if numel < 0:
                raise Malformed("negative storage size", at)
            reader.skip(numel * sizes[key])
    except (Malformed, Truncated) as exc:
        ctx.add(
            "malformed-pickle",
            f"legacy PyTorch storages: {exc}",
            offset=getattr(exc, "offset", reader.offset),
        )
        return
    extra = reader.drain()
    if extra:
        ctx.add(
            "trailing-data",
            f"{extra} bytes after the last storage of a legacy PyTorch checkpoint",
            offset=reader.offset - extra,
        )


def is_legacy_magic(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value == LEGACY_MAGIC


# --------------------------------------------------------------------------- compression


class _Decompressed:
    """A read-only stream over a decompressor, counting output against the budget."""

    def __init__(
        self, raw: Any, decompressor: Any, ctx: ScanContext, compressed_size: int | None
    ) -> None:
        self._raw = raw
        self._d = decompressor
        self._ctx = ctx
        self._out = 0
        self._compressed = compressed_size
        self._pending = b""
        self.error: str | None = None
        self.bomb = False

    def read(self, n: int = -1, /) -> bytes:
        want = CHUNK if n < 0 else n
        d = self._d
        while len(self._pending) < want and not self.bomb and self.error is None:
            if d.eof:
                break
            try:
                if hasattr(d, "unconsumed_tail"):  # zlib
                    data = d.unconsumed_tail or self._raw.read(CHUNK)
                    if not data:
                        self.error = "compressed stream is truncated"
                        break
                    out = d.decompress(data, CHUNK)
                else:  # bz2, lzma keep unconsumed input themselves
                    data = b""
                    if d.needs_input:
                        data = self._raw.read(CHUNK)
                        if not data:
                            self.error = "compressed stream is truncated"
                            break
                    out = d.decompress(data, max_length=CHUNK)
            except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
                self.error = f"decompression failed: {exc}"
                break
            self._out += len(out)
            self._ctx.charge(len(out))
            if (
                self._compressed
                and self._out > _BOMB_MIN
                and self._out > self._ctx.policy.max_ratio * self._compressed
            ):
                self.bomb = True
            self._pending += out
        data, self._pending = self._pending[:want], self._pending[want:]
        return data


def decompressor_for(kind: str) -> Any:
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if kind == "zlib?":
        return zlib.decompressobj()
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    if kind == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    if kind == "lzma?":
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
    raise ValueError(kind)


def scan_compressed(
    f: Any,
    ctx: ScanContext,
    kind: str,
    size: int | None,
    scan_stream: Callable[[Any, ScanContext, int | None], None],
) -> None:
    stream = _Decompressed(f, decompressor_for(kind), ctx, size)
    if kind.endswith("?"):
        # weak magic: only treat it as compressed if the first block decompresses
        probe = stream.read(64)
        if stream.error is not None or not probe:
            ctx.formats[-1] = "data"
            return
        stream._pending = probe + stream._pending
    scan_stream(stream, ctx.nested(f"<{kind.rstrip('?')}>"), None)
    while not stream.bomb and stream.error is None and stream.read(CHUNK):
        pass
    if stream.bomb:
        ctx.add(
            "archive-bomb",
            f"{kind.rstrip('?')} stream expands beyond the scanner's limits",
            offset=0,
        )
    elif stream.error is not None:
        ctx.add("archive-malformed", f"{kind.rstrip('?')}: {stream.error}", offset=0)


def scan_pickle_file(reader: Reader, ctx: ScanContext) -> None:
    """A pickle file: plain, a stream of pickles, or a legacy (non-zip) PyTorch checkpoint."""
    walker = PickleWalker(reader, ctx)
    try:
        first = walker.walk()
    except Malformed as exc:
        ctx.add(
            "malformed-pickle",
            f"{exc} (everything before it was scanned; a loader "
            "would run the opcodes up to this point)",
            offset=exc.offset,
        )
        return
    if is_legacy_magic(first.value):
        ctx.formats[-1] = "pytorch-legacy"
        scan_legacy_torch(reader, ctx, first.value)
        return
    if continue_after_stop(reader, ctx, first.end):
        scan_pickle_stream(reader, ctx)
