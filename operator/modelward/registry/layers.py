"""Listing what a layer puts in the filesystem, from its tar headers, without keeping it.

A layer is read once as it streams from the registry: decompressed (gzip or zstd) chunk by
chunk, its tar headers parsed and its file data skipped, so memory stays at one chunk whatever
the layer's size. Only the paths a policy asks about are kept, with the layer's whiteouts
(``.wh.<name>`` deletes a lower layer's path, ``.wh..wh..opq`` empties a lower directory), so
the final filesystem is folded from the per-layer listings, and each listing is cached under
its layer digest.
"""

from __future__ import annotations

import fnmatch
import posixpath
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from modelward.engine.policy import BIN_DIRECTORIES, ForbiddenContents

BLOCK = 512
#: A pax or GNU long-name record larger than this is not a path; the layer is refused.
MAX_META_BYTES = 1 << 20
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_BIN_DIRECTORIES = frozenset(BIN_DIRECTORIES)


class LayerError(ValueError):
    """A layer that cannot be listed (not a tar, a broken compression stream)."""


@dataclass(frozen=True)
class LayerListing:
    """What one layer adds that a policy forbids, and what it removes from the layers below."""

    matches: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()
    emptied: frozenset[str] = frozenset()
    entries: int = 0


def normalise(path: str) -> str:
    path = posixpath.normpath("/" + path).lstrip("/")
    return "" if path == "." else path


def forbidden(path: str, contents: ForbiddenContents) -> bool:
    if path in contents.paths:
        return True
    directory, _, name = path.rpartition("/")
    return directory in _BIN_DIRECTORIES and any(
        fnmatch.fnmatchcase(name, pattern) for pattern in contents.names
    )


class Decompressor:
    """gzip, zstd or plain tar, told apart by the media type or, failing that, the magic."""

    def __init__(self, media_type: str) -> None:
        self._kind = "zstd" if "zstd" in media_type else "gzip" if "gzip" in media_type else None
        self._gzip: zlib._Decompress | None = None
        self._zstd: object | None = None
        self._started = False
        self._head = bytearray()

    def feed(self, data: bytes) -> bytes:
        if not self._started:
            if self._kind is None and len(self._head) + len(data) < 4:
                self._head += data  # the magic is not whole yet
                return b""
            data, self._head = bytes(self._head) + data, bytearray()
            self._started = True
            if self._kind is None:
                if data[:2] == b"\x1f\x8b":
                    self._kind = "gzip"
                elif data[:4] == b"\x28\xb5\x2f\xfd":
                    self._kind = "zstd"
                else:
                    self._kind = "tar"
            if self._kind == "gzip":
                self._gzip = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            elif self._kind == "zstd":
                try:
                    import zstandard
                except ImportError:  # pragma: no cover - zstandard is a dependency
                    raise LayerError("a zstd layer needs the zstandard package") from None
                self._zstd = zstandard.ZstdDecompressor().decompressobj()
        try:
            if self._gzip is not None:
                return self._gzip.decompress(data)
            if self._zstd is not None:
                out: bytes = self._zstd.decompress(data)  # type: ignore[attr-defined]
                return out
        except Exception as error:
            raise LayerError(f"the {self._kind} stream is broken ({error})") from None
        return data


class TarLister:
    """A push parser of tar headers: feed it bytes, read the entry paths it found."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip = 0
        self._meta_target: str | None = None  # "pax", "gnu-name", "ignore"
        self._meta_left = 0
        self._meta = bytearray()
        self._next_path: str | None = None
        self._ended = False

    def feed(self, data: bytes) -> Iterator[str]:
        view = memoryview(data)
        while view and not self._ended:
            if self._skip:
                step = min(self._skip, len(view))
                self._skip -= step
                if self._meta_target is not None:
                    self._collect(view[:step])
                view = view[step:]
                continue
            need = BLOCK - len(self._buffer)
            self._buffer += view[:need]
            view = view[need:]
            if len(self._buffer) < BLOCK:
                return
            header = bytes(self._buffer)
            self._buffer.clear()
            path = self._header(header)
            if path is not None:
                yield path

    def _collect(self, chunk: memoryview) -> None:
        take = min(self._meta_left, len(chunk))
        self._meta += chunk[:take]
        self._meta_left -= take
        if self._skip == 0:
            self._finish_meta()

    def _finish_meta(self) -> None:
        target, meta = self._meta_target, bytes(self._meta)
        self._meta_target, self._meta = None, bytearray()
        if target == "gnu-name":
            self._next_path = meta.split(b"\0", 1)[0].decode("utf-8", "replace")
        elif target == "pax":
            path = _pax_path(meta)
            if path is not None:
                self._next_path = path

    def _header(self, header: bytes) -> str | None:
        if header == b"\0" * BLOCK:
            return None  # end-of-archive blocks (or padding): nothing to list
        if not _checksum_ok(header):
            raise LayerError("a tar header's checksum is wrong: the layer is not a tar")
        size = _size(header[124:136])
        padded = (size + BLOCK - 1) // BLOCK * BLOCK
        kind = header[156:157]
        if kind in (b"x", b"L"):
            if size > MAX_META_BYTES:
                raise LayerError("a pax or long-name record is larger than 1 MiB")
            self._meta_target = "pax" if kind == b"x" else "gnu-name"
            self._meta_left = size
            self._skip = padded
            if padded == 0:
                self._finish_meta()
            return None
        self._skip = padded
        if kind in (b"g", b"K"):
            return None  # global pax header, GNU long link name: no entry of their own
        name = header[0:100].split(b"\0", 1)[0]
        if header[257:262] == b"ustar":
            prefix = header[345:500].split(b"\0", 1)[0]
            if prefix:
                name = prefix + b"/" + name
        path = self._next_path or name.decode("utf-8", "replace")
        self._next_path = None
        return path


def _checksum_ok(header: bytes) -> bool:
    stored = header[148:156].replace(b"\0", b" ").strip()
    try:
        expected = int(stored or b"0", 8)
    except ValueError:
        return False
    unsigned = sum(header[:148]) + 8 * 32 + sum(header[156:])
    return expected == unsigned


def _size(field: bytes) -> int:
    if field[0] & 0x80:  # base-256 (GNU) for files over 8 GiB
        return int.from_bytes(field[1:], "big")
    text = field.replace(b"\0", b" ").strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise LayerError("a tar header's size is not a number: the layer is not a tar") from None


def _pax_path(meta: bytes) -> str | None:
    path = None
    while meta:
        length_text, _, _ = meta.partition(b" ")
        try:
            length = int(length_text)
        except ValueError:
            raise LayerError("a pax record is malformed") from None
        if length <= 0 or length > len(meta):
            raise LayerError("a pax record is malformed")
        record, meta = meta[:length], meta[length:]
        key, _, value = record.partition(b" ")[2].partition(b"=")
        if key == b"path":
            path = value.rstrip(b"\n").decode("utf-8", "replace")
    return path


class LayerScan:
    """Feeds one layer's compressed bytes through and keeps what the listing needs."""

    def __init__(self, *, media_type: str, contents: ForbiddenContents, max_bytes: int) -> None:
        self._decompressor = Decompressor(media_type)
        self._tar = TarLister()
        self._contents = contents
        self._max = max_bytes
        self._read = 0
        self._matches: set[str] = set()
        self._removed: set[str] = set()
        self._emptied: set[str] = set()
        self._entries = 0

    def feed(self, chunk: bytes) -> None:
        data = self._decompressor.feed(chunk)
        self._read += len(data)
        if self._read > self._max:
            raise LayerError(
                f"the layer unpacks to more than {self._max >> 20} MiB, the bound for listing"
            )
        for raw in self._tar.feed(data):
            self._entries += 1
            path = normalise(raw)
            directory, _, name = path.rpartition("/")
            if name == OPAQUE:
                self._emptied.add(directory)
            elif name.startswith(WHITEOUT):
                self._removed.add(f"{directory}/{name[len(WHITEOUT) :]}".lstrip("/"))
            elif forbidden(path, self._contents):
                self._matches.add(path)

    def result(self) -> LayerListing:
        return LayerListing(
            frozenset(self._matches),
            frozenset(self._removed),
            frozenset(self._emptied),
            self._entries,
        )


def list_layer(
    chunks: Iterable[bytes],
    *,
    media_type: str,
    contents: ForbiddenContents,
    max_bytes: int = 1 << 40,
) -> LayerListing:
    """A whole layer at once (tests, the CLI on local files)."""
    scan = LayerScan(media_type=media_type, contents=contents, max_bytes=max_bytes)
    for chunk in chunks:
        scan.feed(chunk)
    return scan.result()


def final_paths(listings: Iterable[LayerListing]) -> tuple[str, ...]:
    """The forbidden paths present after stacking the layers bottom to top."""
    present: set[str] = set()
    for layer in listings:
        gone = set(layer.removed)
        for directory in layer.emptied:
            gone.update(p for p in present if _under(p, directory))
        for removed in layer.removed:
            gone.update(p for p in present if _under(p, removed))
        present -= gone
        present |= layer.matches
    return tuple(sorted(present))


def _under(path: str, directory: str) -> bool:
    return not directory or path == directory or path.startswith(directory + "/")
