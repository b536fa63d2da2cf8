"""A forward-only buffered reader over any binary stream, with absolute offsets.

The scanners read files, archive members and decompression streams alike, never seek
backwards and never hold more than one chunk (plus the current argument) in memory, so a
512 MiB pickle or a 40 GB tensor blob is scanned in constant memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

CHUNK: Final = 1 << 20


class BinaryStream(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Truncated(Exception):
    """The stream ended before the structure being read did."""


class Reader:
    """Buffered reads with ``offset`` = bytes consumed since the start of the stream."""

    __slots__ = ("_buf", "_eof", "_i", "_stream", "offset")

    def __init__(self, stream: BinaryStream, *, offset: int = 0) -> None:
        self._stream = stream
        self._buf = b""
        self._i = 0
        self._eof = False
        self.offset = offset

    def _fill(self, need: int) -> bool:
        """Ensure ``need`` unread bytes are buffered if the stream has them."""
        while len(self._buf) - self._i < need and not self._eof:
            data = self._stream.read(max(CHUNK, need - (len(self._buf) - self._i)))
            if not data:
                self._eof = True
                break
            self._buf = self._buf[self._i :] + data
            self._i = 0
        return len(self._buf) - self._i >= need

    def byte(self) -> int:
        """The next byte; raises :class:`Truncated` at the end of the stream."""
        if self._i >= len(self._buf) and not self._fill(1):
            raise Truncated("end of stream")
        b = self._buf[self._i]
        self._i += 1
        self.offset += 1
        return b

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes (raises :class:`Truncated`)."""
        if len(self._buf) - self._i < n and not self._fill(n):
            raise Truncated(f"needed {n} bytes")
        data = self._buf[self._i : self._i + n]
        self._i += n
        self.offset += n
        return data

    def peek(self, n: int) -> bytes:
        """Up to ``n`` bytes without consuming them."""
        self._fill(n)
        return self._buf[self._i : self._i + n]

    def readline(self, limit: int = 1 << 16) -> bytes:
        """Bytes up to and excluding ``\\n`` (raises :class:`Truncated` beyond ``limit``)."""
        while True:
            j = self._buf.find(b"\n", self._i)
            if j >= 0:
                line = self._buf[self._i : j]
                if len(line) > limit:
                    raise Truncated("line too long")
                self.offset += j + 1 - self._i
                self._i = j + 1
                return line
            if len(self._buf) - self._i > limit or not self._fill(len(self._buf) - self._i + 1):
                raise Truncated("unterminated line")

    def skip(self, n: int) -> None:
        """Consume ``n`` bytes without keeping them (raises :class:`Truncated`)."""
        available = len(self._buf) - self._i
        if n <= available:
            self._i += n
            self.offset += n
            return
        self.offset += available
        n -= available
        self._buf, self._i = b"", 0
        while n > 0:
            data = self._stream.read(min(n, CHUNK))
            if not data:
                self._eof = True
                raise Truncated(f"{n} bytes missing")
            self.offset += len(data)
            n -= len(data)

    def at_eof_after_line(self) -> bool:
        """After a failed readline: did the stream end (rather than the line being long)?"""
        return self._eof

    def at_eof(self) -> bool:
        return not self._fill(1)

    def sub(self, n: int) -> tuple[Reader, Callable[[], None]]:
        """A reader over the next ``n`` bytes, and the function that skips what it left."""
        stream = _SubStream(self, n)
        return Reader(stream, offset=self.offset), stream.finish

    def drain(self) -> int:
        """Consume everything left; returns how many bytes that was."""
        total = len(self._buf) - self._i
        self.offset += total
        self._buf, self._i = b"", 0
        while True:
            data = self._stream.read(CHUNK)
            if not data:
                self._eof = True
                return total
            total += len(data)
            self.offset += len(data)


class _SubStream:
    """The next ``n`` bytes of a parent reader, as a stream (for embedded pickles)."""

    def __init__(self, parent: Reader, n: int) -> None:
        self._parent = parent
        self._left = n

    def read(self, n: int = -1, /) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if n < 0 else min(n, self._left)
        data = self._parent.peek(min(want, CHUNK))
        if not data:
            return b""
        self._parent.skip(len(data))
        self._left -= len(data)
        return data

    def finish(self) -> None:
        """Skip whatever the consumer did not read."""
        if self._left > 0:
            self._parent.skip(self._left)
            self._left = 0
