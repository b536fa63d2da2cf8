"""A malicious/benign corpus built by hand. Nothing here is ever loaded or unpickled.

Pickles are produced either by a tiny opcode assembler (for hostile streams no pickler would
write) or by the standard pickler over stand-in objects whose ``__reduce__`` names the
globals real checkpoints name (``torch._utils._rebuild_tensor_v2``...). The stand-in
modules live in ``sys.modules`` only while a pickle is being written.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import os
import pickle
import struct
import sys
import tarfile
import types
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# --------------------------------------------------------------------------- assembler


def op_str(s: str) -> bytes:
    data = s.encode()
    return (
        (b"\x8c" + bytes([len(data)]) + data)
        if len(data) < 256
        else (b"X" + struct.pack("<I", len(data)) + data)
    )


def op_bytes(b: bytes) -> bytes:
    return (b"C" + bytes([len(b)]) + b) if len(b) < 256 else (b"B" + struct.pack("<I", len(b)) + b)


def stack_global(module: str, name: str) -> bytes:
    return op_str(module) + op_str(name) + b"\x93"


def call(module: str, name: str, *args: str) -> bytes:
    """module.name(*args) with STACK_GLOBAL + TUPLE + REDUCE (protocol 4)."""
    return stack_global(module, name) + b"(" + b"".join(op_str(a) for a in args) + b"tR"


def proto(n: int, body: bytes) -> bytes:
    return b"\x80" + bytes([n]) + body + b"."


def global0(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


# --------------------------------------------------------------------------- stand-in objects


@contextlib.contextmanager
def fake_modules(*names: str) -> Iterator[dict[str, types.ModuleType]]:
    """Temporarily register empty modules so the pickler can name their members."""
    saved = {n: sys.modules.get(n) for n in names}
    mods = {}
    try:
        for n in names:
            mods[n] = sys.modules[n] = types.ModuleType(n)
        yield mods
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def _fn(module: types.ModuleType, name: str) -> Callable[..., Any]:
    def f(*args: Any) -> None:
        raise AssertionError("stand-ins are never called")

    f.__module__ = module.__name__
    f.__qualname__ = f.__name__ = name
    setattr(module, name, f)
    return f


def _cls(module: types.ModuleType, name: str) -> type:
    c = type(name, (), {"__module__": module.__name__})
    setattr(module, name, c)
    return c


class Reduce:
    """An object that pickles as ``func(*args)`` (plus optional BUILD state)."""

    def __init__(self, func: Any, args: tuple[Any, ...], state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self) -> Any:
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


class Storage:
    def __init__(self, cls: type, key: str, numel: int) -> None:
        self.cls, self.key, self.numel = cls, key, numel


TORCH_MODULES = (
    "torch",
    "torch._utils",
    "numpy",
    "numpy.core",
    "numpy.core.multiarray",
    "argparse_fake",
)


def torch_pickle(
    obj_builder: Callable[[dict[str, types.ModuleType]], Any],
    *,
    protocol: int = 2,
    legacy: bool = False,
) -> tuple[bytes, list[Storage]]:
    """Pickle a checkpoint the way torch.save does (persistent ids for storages)."""
    with fake_modules(*TORCH_MODULES) as m:
        storages: list[Storage] = []
        obj = obj_builder(m)

        class P(pickle.Pickler):
            def persistent_id(self, o: Any) -> Any:
                if isinstance(o, Storage):
                    storages.append(o)
                    if legacy:
                        return ("storage", o.cls, o.key, "cpu", o.numel, None)
                    return ("storage", o.cls, o.key, "cpu", o.numel)
                return None

        buf = io.BytesIO()
        P(buf, protocol=protocol).dump(obj)
        return buf.getvalue(), storages


def _tensor(
    m: dict[str, types.ModuleType],
    storage_cls: str,
    key: str,
    shape: tuple[int, ...],
    stores: list[Storage] | None = None,
) -> Reduce:
    utils = m["torch._utils"]
    rebuild = getattr(utils, "_rebuild_tensor_v2", None) or _fn(utils, "_rebuild_tensor_v2")
    cls = getattr(m["torch"], storage_cls, None) or _cls(m["torch"], storage_cls)
    numel = 1
    for d in shape:
        numel *= d
    stride = tuple(int(numpy_stride) for numpy_stride in _strides(shape))
    return Reduce(
        rebuild, (Storage(cls, key, numel), 0, shape, stride, False, collections.OrderedDict())
    )


def _strides(shape: tuple[int, ...]) -> list[int]:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


def state_dict(n_tensors: int = 4) -> Callable[[dict[str, types.ModuleType]], Any]:
    def build(m: dict[str, types.ModuleType]) -> Any:
        sd = collections.OrderedDict()
        for i in range(n_tensors):
            sd[f"layers.{i}.weight"] = _tensor(m, "FloatStorage", str(i), (4, 3))
        sd["embed.bias"] = _tensor(m, "HalfStorage", str(n_tensors), (7,))
        return sd

    return build


def training_checkpoint(m: dict[str, types.ModuleType]) -> Any:
    mu = m["numpy.core.multiarray"]
    reconstruct = _fn(mu, "_reconstruct")
    scalar = _fn(mu, "scalar")
    ndarray = _cls(m["numpy"], "ndarray")
    dtype = _cls(m["numpy"], "dtype")
    ns = types.SimpleNamespace  # pickles as types.SimpleNamespace: use argparse instead
    del ns
    import argparse

    f8 = Reduce(dtype, ("f8", False, True), (3, "<", None, None, None, -1, -1, 0))
    rng = Reduce(
        reconstruct,
        (ndarray, (0,), b"b"),
        (
            1,
            (624,),
            Reduce(dtype, ("u4", False, True), (3, "<", None, None, None, -1, -1, 0)),
            False,
            b"\x01\x02" * 1248,
        ),
    )
    return {
        "epoch": 12,
        "global_step": 120_000,
        "best_metric": Reduce(scalar, (f8, b"\x00" * 8)),
        "model": state_dict(3)(m),
        "optimizer": {
            "state": {
                0: {
                    "step": _tensor(m, "FloatStorage", "100", ()),
                    "exp_avg": _tensor(m, "FloatStorage", "101", (4, 3)),
                }
            },
            "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0, 1]}],
        },
        "args": argparse.Namespace(lr=1e-4, model="toy", layers=[1, 2]),
        "rng": {
            "numpy": ("MT19937", rng, 624, 0, 0.0),
            "torch": _tensor(m, "ByteStorage", "102", (5056,)),
        },
        "set": {1, 2},
        "frozen": frozenset({"a"}),
        "bytes": b"\x00" * 32,
    }


def torch_zip(
    pickle_bytes: bytes,
    storages: list[Storage],
    *,
    prefix: str = "archive",
    elsize: int = 4,
    compress: int = zipfile.ZIP_STORED,
) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as z:
        z.writestr(f"{prefix}/data.pkl", pickle_bytes)
        z.writestr(f"{prefix}/byteorder", "little")
        for s in storages:
            z.writestr(
                f"{prefix}/data/{s.key}"
                if s.key.isdigit()
                else f"{prefix}/data/{abs(hash(s.key)) % 10_000}",
                os.urandom(s.numel * elsize),
            )
        z.writestr(f"{prefix}/version", "3\n")
        z.writestr(f"{prefix}/.data/serialization_id", "1234567890")
    return buf.getvalue()


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_ELSIZE = {"FloatStorage": 4, "HalfStorage": 2, "ByteStorage": 1, "LongStorage": 8}


def torch_legacy(
    builder: Callable[[dict[str, types.ModuleType]], Any], trailing: bytes = b""
) -> bytes:
    main, storages = torch_pickle(builder, legacy=True)
    keys = sorted({s.key for s in storages})
    by_key = {s.key: s for s in storages}
    out = io.BytesIO()
    out.write(pickle.dumps(LEGACY_MAGIC, protocol=2))
    out.write(pickle.dumps(1001, protocol=2))
    out.write(
        pickle.dumps(
            {
                "protocol_version": 1001,
                "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4},
            },
            protocol=2,
        )
    )
    out.write(main)
    out.write(pickle.dumps(keys, protocol=2))
    for k in keys:
        s = by_key[k]
        out.write(struct.pack("<q", s.numel))
        out.write(os.urandom(s.numel * _ELSIZE[s.cls.__name__]))
    return out.getvalue() + trailing


def torch_tar() -> bytes:
    """The pre-1.0 tar checkpoint: sys_info, pickle, storages, tensors members."""
    main, storages = torch_pickle(state_dict(2), legacy=True)
    with fake_modules("torch") as m:
        fs = _cls(m["torch"], "FloatStorage")
        hs = _cls(m["torch"], "HalfStorage")
        st = io.BytesIO()
        st.write(pickle.dumps(len(storages), protocol=2))
        for s in storages:
            cls = fs if s.cls.__name__ == "FloatStorage" else hs
            st.write(pickle.dumps((s.key, "cpu", cls), protocol=2))
            st.write(struct.pack("<q", s.numel) + os.urandom(s.numel * _ELSIZE[s.cls.__name__]))
        st.write(pickle.dumps([], protocol=2))
        tensors = io.BytesIO()
        tensors.write(pickle.dumps(1, protocol=2))
        tensors.write(pickle.dumps(("t0", storages[0].key, fs), protocol=2))
        tensors.write(
            struct.pack("<i", 2)
            + b"\x00" * 4
            + struct.pack("<2q", 4, 3)
            + struct.pack("<2q", 3, 1)
            + struct.pack("<q", 0)
        )
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (
            ("sys_info", pickle.dumps({"little_endian": True}, protocol=2)),
            ("pickle", main),
            ("storages", st.getvalue()),
            ("tensors", tensors.getvalue()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def npy(descr: str, shape: tuple[int, ...], data: bytes, *, version: int = 1) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    pad = 16 - (10 + len(header) + 1) % 16
    header += b" " * pad + b"\n"
    size = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + size + header + data


def npz(members: dict[str, bytes], compress: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def safetensors(tensors: dict[str, tuple[str, tuple[int, ...], bytes]]) -> bytes:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    blobs = []
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def joblib_pickle(*, object_payload: bytes | None = None, after: bytes = b"") -> bytes:
    """What joblib.dump writes for {'coef': float64 array}: wrapper, BUILD, raw bytes."""

    def state(dtype_descr: str, shape: tuple[int, ...]) -> bytes:
        return (
            b"}("
            + op_str("subclass")
            + stack_global("numpy", "ndarray")
            + op_str("shape")
            + b"("
            + b"".join(b"K" + bytes([d]) for d in shape)
            + b"t"
            + op_str("order")
            + op_str("C")
            + op_str("dtype")
            + stack_global("numpy", "dtype")
            + op_str(dtype_descr)
            + b"\x89\x88\x87R"
            + b"(K\x03"
            + op_str("<")
            + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
            + op_str("allow_mmap")
            + b"\x88"
            + op_str("numpy_array_alignment_bytes")
            + b"K\x10ub"
        )

    wrapper = stack_global("joblib.numpy_pickle", "NumpyArrayWrapper") + b")\x81"
    body = b"\x80\x04}(" + op_str("coef") + wrapper + state("f8", (3, 2))
    pos = len(body) + 1  # the padding byte itself
    padding = (16 - pos % 16) % 16
    body += bytes([padding]) + b"\xff" * padding + struct.pack("<6d", *range(6))
    if object_payload is not None:
        body += op_str("objs") + wrapper + state("O8", (1,)) + object_payload
    return body + after + b"u."


# --------------------------------------------------------------------------- ONNX


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb(field: int, value: bytes | int | str) -> bytes:
    if isinstance(value, int):
        return _varint(field << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def onnx_model(
    *,
    nodes: list[bytes] | None = None,
    initializers: list[bytes] | None = None,
    opsets: tuple[str, ...] = ("",),
) -> bytes:
    node = pb(1, "X") + pb(2, "Y") + pb(3, "relu") + pb(4, "Relu")
    graph = b"".join(pb(1, n) for n in (nodes or [node]))
    graph += pb(2, "g")
    graph += b"".join(pb(5, t) for t in (initializers or []))
    graph += pb(11, pb(1, "X")) + pb(12, pb(1, "Y"))
    model = pb(1, 9) + pb(2, "modelward-tests") + pb(7, graph)
    model += b"".join(pb(8, pb(1, d) + pb(2, 17 if d == "" else 1)) for d in opsets)
    return model


def onnx_tensor(name: str, *, location: str | None = None, raw: bytes = b"") -> bytes:
    t = pb(1, 2) + pb(2, 1) + pb(8, name)
    if location is not None:
        t += pb(13, pb(1, "location") + pb(2, location)) + pb(14, 1)
    else:
        t += pb(9, raw)
    return t


# --------------------------------------------------------------------------- zip tricks


def zip_bytes(members: dict[str, bytes], compress: int = zipfile.ZIP_STORED) -> bytes:
    return npz(members, compress)


def corrupt_crc(data: bytes, member: str) -> bytes:
    raw = bytearray(data)
    z = zipfile.ZipFile(io.BytesIO(data))
    info = z.getinfo(member)
    bad = struct.pack("<I", (info.CRC ^ 0xDEADBEEF) & 0xFFFFFFFF)
    raw[info.header_offset + 14 : info.header_offset + 18] = bad
    cd = data.rfind(b"PK\x01\x02" + data[data.find(b"PK\x01\x02") + 4 :][:0])
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        name_len = struct.unpack("<H", data[pos + 28 : pos + 30])[0]
        if data[pos + 46 : pos + 46 + name_len] == member.encode():
            raw[pos + 16 : pos + 20] = bad
        pos = data.find(b"PK\x01\x02", pos + 4)
    del cd
    return bytes(raw)


def rename_in_central_directory(data: bytes, old: str, new: str) -> bytes:
    assert len(old) == len(new)
    pos = data.find(b"PK\x01\x02")
    return data[:pos] + data[pos:].replace(old.encode(), new.encode(), 1)


def gzip_bytes(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def tar_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@dataclass(frozen=True)
class Sample:
    family: str
    name: str
    data: bytes
    filename: str = "model.bin"
