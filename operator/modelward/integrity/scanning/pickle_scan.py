"""Walk pickle opcodes with a real stack and memo, never executing anything.

Why a model of the stack and the memo rather than a list of ``GLOBAL`` strings: since
protocol 4 the callable is named by ``STACK_GLOBAL``, which takes its module and name from
the stack, and those can come from the memo (``BINGET``), from a previous call, or from
anything the attacker arranges. Scanners that pattern-match the preceding string opcodes are
bypassed by memo indirection; we resolve operands exactly as the unpickler would, and when
an operand is not a constant string we say so instead of guessing.

What makes a pickle dangerous is a *callable*: only ``GLOBAL``/``STACK_GLOBAL``/``INST``
(import), the ``EXT`` opcodes (extension registry) and persistent ids (the loader's hook)
produce one, and only ``REDUCE``/``NEWOBJ``/``OBJ``/``INST``/``BUILD`` (and the container
opcodes on non-containers) call anything. Every import is checked against the allowlist, and
every call of something that is not an imported global is reported.

The walk is streaming: long string/bytes arguments are skipped (or, when they start like a
pickle, scanned as embedded pickles) instead of being read, and the containers we model keep
a bounded number of items, so memory stays flat whatever the file size.
"""

from __future__ import annotations

import codecs
import io
import re
from dataclasses import dataclass, field
from typing import Any, Final

from modelward.integrity.scanning.allowlist import danger, normalise
from modelward.integrity.scanning.context import ScanContext
from modelward.integrity.scanning.reader import Reader, Truncated

#: Arguments longer than this are not materialised (only their head is looked at).
MAX_INLINE: Final = 1 << 16
#: Longest text argument (protocol 0) accepted; CPython has no limit, we fail closed.
MAX_LINE: Final = 16 << 20
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_OPCODES: Final = frozenset(
    b"IJKML\x8a\x8bSTUBC\x8e\x96\x97\x98N\x88\x89V\x8cX\x8dFG]ael)t"
    b"\x85\x86\x87}dsu\x8f\x90\x9102(1ghjpqr\x94\x82\x83\x84c\x93Rbio"
    b"\x81\x92\x80.\x95PQ"
)


class Malformed(Exception):
    """The stream is not a valid pickle at ``offset``."""

    def __init__(self, message: str, offset: int, *, at_end: bool = False) -> None:
        super().__init__(message)
        self.offset = offset
        self.at_end = at_end  # the stream ended (as opposed to: invalid content)


class Global:
    """An imported callable/class (``module.name``)."""

    __slots__ = ("module", "name", "offset")

    def __init__(self, module: str, name: str, offset: int) -> None:
        self.module, self.name, self.offset = module, name, offset

    @property
    def full(self) -> str:
        return f"{self.module}.{self.name}"


class Call:
    """The result of calling ``func`` (REDUCE, NEWOBJ, INST, OBJ, persistent load)."""

    __slots__ = ("args", "func", "offset", "state")

    def __init__(self, func: Any, args: Any, offset: int) -> None:
        self.func, self.args, self.offset = func, args, offset
        self.state: Any = None


class Opaque:
    """A value we do not model (long string, out-of-band buffer, unknown memo entry)."""

    __slots__ = ("kind", "size")

    def __init__(self, kind: str, size: int = 0) -> None:
        self.kind, self.size = kind, size


PERSISTENT: Final = Global("<persistent_load>", "", -1)


class _List(list[Any]):
    """A modelled list/dict/set that stops retaining items past the budget."""

    truncated: bool = False


@dataclass
class PickleResult:
    """What the walk saw; ``value`` is the modelled top-level object."""

    complete: bool = False
    value: Any = None
    end: int = 0
    protocol: int = 0
    persistent_ids: list[Any] = field(default_factory=list)
    callables: int = 0
    opcodes: int = 0


def looks_like_pickle(head: bytes) -> bool:
    """Cheap first test: a PROTO header, or a first byte that is an opcode."""
    if len(head) >= 2 and head[0] == 0x80:
        return head[1] <= 5 and (len(head) < 3 or head[2] in _OPCODES)
    return bool(head) and head[0] in _OPCODES and head[0] != 0x2E


class PickleWalker:
    """One walk over one pickle (until STOP) from the reader's current position."""

    def __init__(self, reader: Reader, ctx: ScanContext, *, probe: bool = False) -> None:
        self.r = reader
        self.ctx = ctx
        self.probe = probe
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.retained = 0
        self.result = PickleResult()
        self.start = reader.offset
        self._seen_nested_offsets: set[int] = set()

    # ------------------------------------------------------------------ helpers

    def _pop(self, at: int) -> Any:
        if not self.stack:
            raise Malformed("stack underflow", at)
        return self.stack.pop()

    def _pop_mark(self, at: int) -> list[Any]:
        if not self.metastack:
            raise Malformed("MARK expected", at)
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def _push(self, value: Any, at: int) -> None:
        if len(self.stack) >= self.ctx.policy.max_stack:
            raise Malformed("stack grows beyond the scanner's limit", at)
        self.stack.append(value)

    def _retain(self, container: Any, items: list[Any]) -> None:
        """Add items to a modelled container within the retention budget."""
        if not isinstance(container, _List):
            return
        room = self.ctx.policy.max_retained - self.retained
        if room <= 0:
            container.truncated = True
            return
        take = items[:room]
        container.extend(take)
        self.retained += len(take)

    def _new(self, items: list[Any]) -> _List:
        lst = _List()
        lst.truncated = False
        self._retain(lst, items)
        return lst

    def _check_global(self, module: str, name: str, at: int) -> Global:
        self.result.callables += 1
        m, n = normalise(module, name)
        g = Global(m, n, at)
        if self.ctx.allowlist.allows(m, n):
            return g
        full = g.full
        if "." in n:
            self.ctx.add(
                "dotted-global",
                f"global {full!r} traverses attributes ({danger(m, n) or 'not on the allowlist'})",
                offset=at,
                global_name=full,
            )
        elif (why := danger(m, n)) is not None:
            self.ctx.add("dangerous-global", f"imports {full}: {why}", offset=at, global_name=full)
        else:
            self.ctx.add(
                "unknown-global",
                f"imports {full}, which is not on the allowlist "
                "(add it with --allow-global if it is expected)",
                offset=at,
                global_name=full,
            )
        return g

    def _check_callable(self, func: Any, at: int, how: str) -> None:
        if isinstance(func, Global):
            self._check_use(func, at, how)
            return
        if isinstance(func, Call) and func.func is PERSISTENT:
            self.ctx.add(
                "computed-callable",
                f"{how} calls an object returned by the loader's persistent_load hook",
                offset=at,
            )
            return
        self.ctx.add(
            "computed-callable",
            f"{how} calls a value that is not an imported global ({_describe(func)})",
            offset=at,
        )

    def _check_use(self, func: Global, at: int, how: str) -> None:
        """A profile's class is created, not called; a stored function is never called."""
        use = self.ctx.allowlist.use(func.full)
        called = how in ("REDUCE", "OBJ", "INST")
        if (use == "class" and called) or use == "reference":
            what = "creates" if how.startswith("NEWOBJ") else "calls"
            why = (
                "runs its __init__ with arguments from the file"
                if use == "class"
                else "a stored function must not run"
            )
            self.ctx.add(
                "trusted-type-misuse",
                f"{how} {what} the trusted {use} {func.full}, which libraries never do "
                f"while loading ({why}); if the file is genuine, allow the name for any use "
                "with allowedGlobals (--allow-global)",
                offset=at,
                global_name=func.full,
            )

    def _text_pair(self, at: int) -> tuple[str, str]:
        module = self._line(at).decode("utf-8", "replace")
        name = self._line(at).decode("utf-8", "replace")
        if self.probe and not (_IDENT.fullmatch(module) and _IDENT.fullmatch(name)):
            raise Malformed("not identifiers", at)
        return module, name

    def _line(self, at: int) -> bytes:
        try:
            return self.r.readline(MAX_LINE)
        except Truncated as exc:
            raise Malformed(
                f"truncated text argument ({exc})", at, at_end=self.r.at_eof_after_line()
            ) from exc

    def _string(self, n: int, at: int, kind: str) -> Any:
        """Read a length-prefixed string/bytes argument, scanning embedded pickles."""
        if n < 0:
            raise Malformed("negative length", at)
        head = self.r.peek(8)
        if (
            n >= 16
            and len(head) >= 3
            and head[0] == 0x80
            and head[1] in (2, 3, 4, 5)
            and head[2] in _OPCODES
            and not self.probe
        ):
            self._scan_embedded(n, at)
            return Opaque(kind, n)
        if n > MAX_INLINE:
            try:
                self.r.skip(n)
            except Truncated as exc:
                raise Malformed(f"{kind} argument of {n} bytes runs past the end", at) from exc
            return Opaque(kind, n)
        try:
            data = self.r.read(n)
        except Truncated as exc:
            raise Malformed(f"{kind} argument of {n} bytes runs past the end", at) from exc
        if kind == "str":
            try:
                return data.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError as exc:
                raise Malformed("invalid UTF-8 in a unicode string", at) from exc
        if kind == "latin1":
            return data.decode("latin-1")
        return data

    def _scan_embedded(self, n: int, at: int) -> None:
        """A bytes/str argument that is itself a pickle: scan it in place, streaming."""
        if self.ctx.depth >= self.ctx.policy.max_depth:
            self.ctx.add("nesting-too-deep", "embedded pickles nested too deeply", offset=at)
            self.r.skip(n)
            return
        sub, finish = self.r.sub(n)
        inner = self.ctx.isolated(f"<embedded pickle @{at}>")
        results = scan_pickle_stream(sub, inner, allow_trailing=True)
        # Binary data that merely starts like a pickle fails fast without importing
        # anything: that is not a finding. A real embedded pickle keeps all its findings.
        if (results and results[0].complete) or any(
            f.rule != "malformed-pickle" for f in inner.findings
        ):
            self.ctx.merge(inner)
        try:
            finish()
        except Truncated as exc:
            raise Malformed("embedded pickle runs past the end", at) from exc

    # ------------------------------------------------------------------ the walk

    def walk(self) -> PickleResult:
        """Walk until STOP; raises :class:`Malformed` on anything a real unpickler rejects."""
        r = self.r
        stack = self.stack
        push = self._push
        res = self.result
        while True:
            at = r.offset
            try:
                op = r.byte()
            except Truncated:
                raise Malformed(
                    "stream ends before STOP (truncated pickle)", at, at_end=True
                ) from None
            res.opcodes += 1
            stack = self.stack
            try:
                if op == 0x94:  # MEMOIZE
                    if not stack:
                        raise Malformed("MEMOIZE on empty stack", at)
                    self._memo_put(len(self.memo), stack[-1], at)
                elif op == 0x71:  # BINPUT
                    if not stack:
                        raise Malformed("PUT on empty stack", at)
                    self._memo_put(r.byte(), stack[-1], at)
                elif op == 0x72:  # LONG_BINPUT
                    if not stack:
                        raise Malformed("PUT on empty stack", at)
                    self._memo_put(int.from_bytes(r.read(4), "little"), stack[-1], at)
                elif op == 0x68:  # BINGET
                    push(self._memo_get(r.byte(), at), at)
                elif op == 0x6A:  # LONG_BINGET
                    push(self._memo_get(int.from_bytes(r.read(4), "little"), at), at)
                elif op == 0x8C:  # SHORT_BINUNICODE
                    push(self._string(r.byte(), at, "str"), at)
                elif op == 0x58:  # BINUNICODE
                    push(self._string(int.from_bytes(r.read(4), "little"), at, "str"), at)
                elif op == 0x8D:  # BINUNICODE8
                    push(self._string(int.from_bytes(r.read(8), "little"), at, "str"), at)
                elif op == 0x4B:  # BININT1
                    push(r.byte(), at)
                elif op == 0x4D:  # BININT2
                    push(int.from_bytes(r.read(2), "little"), at)
                elif op == 0x4A:  # BININT
                    push(int.from_bytes(r.read(4), "little", signed=True), at)
                elif op == 0x28:  # MARK
                    if len(self.metastack) >= self.ctx.policy.max_stack:
                        raise Malformed("too many nested MARKs", at)
                    self.metastack.append(stack)
                    self.stack = []
                elif op == 0x85:  # TUPLE1
                    push((self._pop(at),), at)
                elif op == 0x86:  # TUPLE2
                    b = self._pop(at)
                    push((self._pop(at), b), at)
                elif op == 0x87:  # TUPLE3
                    c = self._pop(at)
                    b = self._pop(at)
                    push((self._pop(at), b, c), at)
                elif op == 0x74:  # TUPLE
                    push(tuple(self._pop_mark(at)[:64]), at)
                elif op == 0x29:  # EMPTY_TUPLE
                    push((), at)
                elif op in (0x5D, 0x7D, 0x8F):  # EMPTY_LIST, EMPTY_DICT, EMPTY_SET
                    push(self._new([]), at)
                elif op in (0x6C, 0x64, 0x91):  # LIST, DICT, FROZENSET
                    push(self._new(self._pop_mark(at)), at)
                elif op in (0x65, 0x75, 0x90):  # APPENDS, SETITEMS, ADDITEMS
                    items = self._pop_mark(at)
                    if not self.stack:
                        raise Malformed("container opcode on empty stack", at)
                    self._container_target(self.stack[-1], at)
                    self._retain(self.stack[-1], items)
                elif op in (0x61, 0x73):  # APPEND, SETITEM
                    items = [self._pop(at)] if op == 0x61 else [self._pop(at), self._pop(at)]
                    if not self.stack:
                        raise Malformed("container opcode on empty stack", at)
                    self._container_target(self.stack[-1], at)
                    self._retain(self.stack[-1], items[::-1])
                elif op == 0x52:  # REDUCE
                    args = self._pop(at)
                    func = self._pop(at)
                    self._check_callable(func, at, "REDUCE")
                    if (
                        isinstance(func, Global)
                        and func.full == "copyreg._reconstructor"
                        and isinstance(args, tuple)
                        and len(args) > 1
                        and isinstance(args[1], Global)
                    ):
                        # _reconstructor(cls, base, state) runs base.__init__(obj, state)
                        self._check_use(args[1], at, "REDUCE")
                    push(Call(func, args, at), at)
                elif op == 0x62:  # BUILD
                    state = self._pop(at)
                    if not self.stack:
                        raise Malformed("BUILD on empty stack", at)
                    self._build(self.stack[-1], state, at)
                elif op == 0x81:  # NEWOBJ
                    args = self._pop(at)
                    cls = self._pop(at)
                    self._check_callable(cls, at, "NEWOBJ")
                    push(Call(cls, args, at), at)
                elif op == 0x92:  # NEWOBJ_EX
                    self._pop(at)
                    args = self._pop(at)
                    cls = self._pop(at)
                    self._check_callable(cls, at, "NEWOBJ_EX")
                    push(Call(cls, args, at), at)
                elif op == 0x93:  # STACK_GLOBAL
                    name = self._pop(at)
                    module = self._pop(at)
                    if isinstance(module, str) and isinstance(name, str):
                        push(self._check_global(module, name, at), at)
                    else:
                        if self.probe:
                            raise Malformed("computed STACK_GLOBAL", at)
                        res.callables += 1
                        self.ctx.add(
                            "computed-global",
                            "STACK_GLOBAL operands are not "
                            f"constant strings (module: {_describe(module)}, name: "
                            f"{_describe(name)})",
                            offset=at,
                        )
                        push(Global("<computed>", "<computed>", at), at)
                elif op == 0x63:  # GLOBAL
                    module, name = self._text_pair(at)
                    push(self._check_global(module, name, at), at)
                elif op == 0x69:  # INST
                    module, name = self._text_pair(at)
                    g = self._check_global(module, name, at)
                    self._check_use(g, at, "INST")
                    push(Call(g, tuple(self._pop_mark(at)[:64]), at), at)
                elif op == 0x6F:  # OBJ
                    items = self._pop_mark(at)
                    if not items:
                        raise Malformed("OBJ without a class", at)
                    self._check_callable(items[0], at, "OBJ")
                    push(Call(items[0], tuple(items[1:64]), at), at)
                elif op in (0x82, 0x83, 0x84):  # EXT1, EXT2, EXT4
                    size = {0x82: 1, 0x83: 2, 0x84: 4}[op]
                    code = int.from_bytes(r.read(size), "little", signed=op == 0x84)
                    if self.probe:
                        raise Malformed("EXT in probe", at)
                    res.callables += 1
                    self.ctx.add(
                        "extension-global",
                        f"EXT opcode loads extension code {code} "
                        "from the copyreg registry (an import decided at load time)",
                        offset=at,
                        global_name=f"<ext {code}>",
                    )
                    push(Global("<extension>", str(code), at), at)
                elif op == 0x51:  # BINPERSID
                    pid = self._pop(at)
                    res.persistent_ids.append(pid)
                    push(Call(PERSISTENT, pid, at), at)
                elif op == 0x50:  # PERSID
                    pid_text = self._line(at).decode("ascii", "replace")
                    res.persistent_ids.append(pid_text)
                    push(Call(PERSISTENT, pid_text, at), at)
                elif op == 0x4E:  # NONE
                    push(None, at)
                elif op == 0x88:  # NEWTRUE
                    push(True, at)
                elif op == 0x89:  # NEWFALSE
                    push(False, at)
                elif op == 0x47:  # BINFLOAT
                    r.skip(8)
                    push(0.0, at)
                elif op == 0x8A:  # LONG1
                    n = r.byte()
                    push(int.from_bytes(r.read(n), "little", signed=True), at)
                elif op == 0x8B:  # LONG4
                    n = int.from_bytes(r.read(4), "little", signed=True)
                    if n < 0:
                        raise Malformed("negative LONG4 length", at)
                    if n > MAX_INLINE:
                        r.skip(n)
                        push(Opaque("int", n), at)
                    else:
                        push(int.from_bytes(r.read(n), "little", signed=True), at)
                elif op == 0x43:  # SHORT_BINBYTES
                    push(self._string(r.byte(), at, "bytes"), at)
                elif op == 0x42:  # BINBYTES
                    push(self._string(int.from_bytes(r.read(4), "little"), at, "bytes"), at)
                elif op in (0x8E, 0x96):  # BINBYTES8, BYTEARRAY8
                    push(self._string(int.from_bytes(r.read(8), "little"), at, "bytes"), at)
                elif op == 0x55:  # SHORT_BINSTRING
                    push(self._string(r.byte(), at, "latin1"), at)
                elif op == 0x54:  # BINSTRING
                    push(
                        self._string(
                            int.from_bytes(r.read(4), "little", signed=True), at, "latin1"
                        ),
                        at,
                    )
                elif op == 0x95:  # FRAME
                    r.skip(8)
                elif op == 0x80:  # PROTO
                    proto = r.byte()
                    if proto > 5:
                        raise Malformed(f"unsupported pickle protocol {proto}", at)
                    res.protocol = proto
                elif op == 0x2E:  # STOP
                    res.value = self._pop(at)
                    res.complete = True
                    res.end = r.offset
                    return res
                elif op == 0x30:  # POP
                    if stack:
                        stack.pop()
                    else:
                        self._pop_mark(at)
                elif op == 0x31:  # POP_MARK
                    self._pop_mark(at)
                elif op == 0x32:  # DUP
                    if not stack:
                        raise Malformed("DUP on empty stack", at)
                    push(stack[-1], at)
                elif op in (0x67, 0x70):  # GET, PUT (decimal text argument)
                    text = self._line(at)
                    try:
                        idx = int(text)
                    except ValueError:
                        raise Malformed("invalid memo index", at) from None
                    if op == 0x67:
                        push(self._memo_get(idx, at), at)
                    else:
                        if not stack:
                            raise Malformed("PUT on empty stack", at)
                        self._memo_put(idx, stack[-1], at)
                elif op == 0x49:  # INT (text; 00/01 are False/True)
                    push(self._text_int(at), at)
                elif op == 0x4C:  # LONG (text)
                    line = self._line(at).rstrip(b"L")
                    push(self._parse_int(line, at), at)
                elif op == 0x46:  # FLOAT (text)
                    line = self._line(at)
                    try:
                        float(line)
                    except ValueError:
                        raise Malformed("invalid FLOAT", at) from None
                    push(0.0, at)
                elif op == 0x53:  # STRING (quoted repr)
                    push(self._quoted(self._line(at), at), at)
                elif op == 0x56:  # UNICODE (raw-unicode-escape)
                    line = self._line(at)
                    try:
                        push(codecs.decode(line, "raw-unicode-escape"), at)
                    except UnicodeDecodeError:
                        raise Malformed("invalid UNICODE argument", at) from None
                elif op in (0x97, 0x98):  # NEXT_BUFFER, READONLY_BUFFER
                    if op == 0x97:
                        push(Opaque("buffer"), at)
                    elif not stack:
                        raise Malformed("READONLY_BUFFER on empty stack", at)
                else:
                    raise Malformed(f"invalid opcode 0x{op:02x}", at)
            except Truncated:
                raise Malformed(
                    "stream ends inside an opcode argument (truncated pickle)", at, at_end=True
                ) from None

    # ------------------------------------------------------------------ opcode helpers

    def _memo_put(self, idx: int, value: Any, at: int) -> None:
        if len(self.memo) >= self.ctx.policy.max_stack and idx not in self.memo:
            # Past the limit only the values that matter for imports are remembered.
            if not isinstance(value, (Global, Call, str)):
                return
            if len(self.memo) >= 2 * self.ctx.policy.max_stack:
                raise Malformed("memo grows beyond the scanner's limit", at)
        self.memo[idx] = value

    def _memo_get(self, idx: int, at: int) -> Any:
        try:
            return self.memo[idx]
        except KeyError:
            if len(self.memo) >= self.ctx.policy.max_stack:
                return Opaque("forgotten memo entry")
            raise Malformed(f"memo entry {idx} read before it is written", at) from None

    def _text_int(self, at: int) -> Any:
        line = self._line(at)
        if line == b"00":
            return False
        if line == b"01":
            return True
        return self._parse_int(line, at)

    @staticmethod
    def _parse_int(line: bytes, at: int) -> int:
        if len(line) > 4300:
            raise Malformed("integer literal too long", at)
        try:
            return int(line)
        except ValueError:
            raise Malformed("invalid integer literal", at) from None

    @staticmethod
    def _quoted(line: bytes, at: int) -> str:
        if len(line) < 2 or line[0] not in b"'\"" or line[-1] != line[0]:
            raise Malformed("STRING argument is not quoted", at)
        try:
            return codecs.escape_decode(line[1:-1])[0].decode("latin-1")
        except ValueError:
            raise Malformed("invalid escape in STRING", at) from None

    def _container_target(self, target: Any, at: int) -> None:
        """APPEND/SETITEM on something that is not a container calls its methods."""
        if isinstance(target, Global):
            self.ctx.add(
                "global-state",
                f"container opcode mutates the imported global {target.full}",
                offset=at,
                global_name=target.full,
            )

    def _build(self, target: Any, state: Any, at: int) -> None:
        if isinstance(target, Global):
            self.ctx.add(
                "global-state",
                f"BUILD sets attributes on the imported global "
                f"{target.full} (overwrites module state)",
                offset=at,
                global_name=target.full,
            )
            return
        if isinstance(target, Call):
            target.state = state
            func = target.func
            if (
                isinstance(func, Global)
                and func.name == "NumpyArrayWrapper"
                and func.module.endswith("joblib.numpy_pickle")
                and not self.probe
            ):
                _skip_joblib_array(self, state, at)


def _describe(value: Any) -> str:
    if isinstance(value, Global):
        return f"global {value.full}"
    if isinstance(value, Call):
        return f"result of calling {_describe(value.func)}"
    if isinstance(value, Opaque):
        return f"opaque {value.kind}"
    if isinstance(value, _List):
        return "container"
    return type(value).__name__


# --------------------------------------------------------------------------- joblib

_NUMPY_KIND_SIZES: Final = {"b": 1, "?": 1}


def _dtype_info(dtype: Any) -> tuple[int, bool] | None:
    """(itemsize, has_object) of a modelled ``numpy.dtype(...)`` call, if recognisable."""
    if not isinstance(dtype, Call) or not isinstance(dtype.args, tuple) or not dtype.args:
        return None
    descr = dtype.args[0]
    if not isinstance(descr, str):
        return None
    state = dtype.state
    flags = state[7] if isinstance(state, tuple) and len(state) > 7 else 0
    has_object = descr.startswith("O") or (isinstance(flags, int) and bool(flags & 1))
    if isinstance(state, tuple) and len(state) > 5 and isinstance(state[5], int) and state[5] > 0:
        return state[5], has_object
    m = re.fullmatch(r"[<>|=]?([a-zA-Z?])(\d*)", descr)
    if not m:
        return None
    kind, size = m.group(1), m.group(2)
    if size:
        return int(size) * (4 if kind == "U" else 1), has_object
    default = _NUMPY_KIND_SIZES.get(kind, 8 if kind == "O" else 0)
    return (default, has_object) if default else None


def _state_get(state: Any, key: str) -> Any:
    if isinstance(state, _List):
        items = list(state)
        for i in range(0, len(items) - 1, 2):
            if items[i] == key:
                return items[i + 1]
    return None


def _skip_joblib_array(walker: PickleWalker, state: Any, at: int) -> None:
    """joblib writes each array's bytes right after the wrapper's BUILD: skip or scan them."""
    shape = _state_get(state, "shape")
    info = _dtype_info(_state_get(state, "dtype"))
    if (
        not isinstance(shape, tuple)
        or not all(isinstance(d, int) and d >= 0 for d in shape)
        or info is None
    ):
        raise Malformed("joblib array wrapper with an unreadable shape or dtype", at)
    itemsize, has_object = info
    if has_object:
        walker.ctx.add(
            "numpy-object-array",
            "joblib stores a NumPy object array as a nested pickle (scanned)",
            offset=at,
        )
        inner = PickleWalker(walker.r, walker.ctx.nested(f"<joblib object array @{at}>"))
        try:
            inner.walk()
        except Malformed as exc:
            inner.ctx.add("malformed-pickle", str(exc), offset=exc.offset)
            raise Malformed("joblib object array pickle is malformed", at) from exc
        return
    count = 1
    for d in shape:
        count *= d
    r = walker.r
    if _state_get(state, "numpy_array_alignment_bytes") is not None:
        r.skip(r.byte())
    r.skip(count * itemsize)


# --------------------------------------------------------------------------- entry points


def scan_pickle_stream(
    reader: Reader, ctx: ScanContext, *, allow_trailing: bool = False
) -> list[PickleResult]:
    """Scan a stream of one or more pickles to its end.

    Data after the last STOP that is not itself a pickle is reported (``trailing-data``)
    unless ``allow_trailing`` (embedded pickles live inside larger byte strings).
    """
    results: list[PickleResult] = []
    while True:
        walker = PickleWalker(reader, ctx)
        try:
            results.append(walker.walk())
        except Malformed as exc:
            ctx.add(
                "malformed-pickle",
                f"{exc} (everything before it was scanned; a loader "
                "would run the opcodes up to this point)",
                offset=exc.offset,
            )
            return results
        if allow_trailing or not continue_after_stop(reader, ctx, results[-1].end):
            return results


def continue_after_stop(reader: Reader, ctx: ScanContext, end: int) -> bool:
    """After a STOP: True if another pickle follows; reports anything else as trailing data."""
    head = reader.peek(8)
    if not head:
        return False
    if looks_like_pickle(head):
        return True
    size = reader.drain()
    ctx.add(
        "trailing-data",
        f"{size} bytes after the pickle's STOP at offset {end} (a second "
        "load() or another loader would read them)",
        offset=end,
    )
    return False


def probe_pickle(head: bytes, ctx: ScanContext, *, window: int = 1 << 16) -> bool:
    """Is this (first part of a) file a pickle? Decided by parsing, not by extension.

    A text file whose first byte happens to be an opcode fails within a few opcodes; a
    pickle either reaches STOP, runs off the end of the probe window, or imports something.
    """
    walker = PickleWalker(Reader(io.BytesIO(head)), ctx.isolated(None), probe=True)
    try:
        walker.walk()
    except Malformed as exc:
        # Ran off the end of the probe window: a pickle, if the window was a full one (the
        # file goes on) or enough opcodes parsed to rule out a text file's first letters.
        ran_off_end = exc.at_end and (len(head) >= window or walker.result.opcodes >= 4)
        return ran_off_end or walker.result.callables > 0
    return True
