"""Detection and false-positive counts over a hand-built corpus, by attack family.

Run with ``-s`` to see the table; the counts are also asserted (every malicious sample
detected, no benign sample flagged).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import pytest

from modelward.integrity.scanning import ScanPolicy, scan_bytes, scan_paths

from . import corpus as c
from .corpus import Sample

# --------------------------------------------------------------------------- malicious

GADGETS = [
    ("os", "system"),
    ("posix", "system"),
    ("nt", "system"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "__import__"),
    ("builtins", "getattr"),
    ("builtins", "open"),
    ("__builtin__", "eval"),
    ("runpy", "_run_code"),
    ("pip", "main"),
    ("pydoc", "locate"),
    ("operator", "attrgetter"),
    ("operator", "methodcaller"),
    ("functools", "partial"),
    ("asyncio.unix_events", "_UnixSubprocessTransport._start"),
    ("torch", "load"),
    ("torch.hub", "load"),
    ("numpy", "load"),
    ("numpy.testing._private.utils", "runstring"),
    ("joblib", "load"),
    ("webbrowser", "open"),
    ("importlib", "import_module"),
    ("code", "InteractiveInterpreter"),
    ("timeit", "timeit"),
    ("cProfile", "run"),
    ("shutil", "rmtree"),
    ("_posixsubprocess", "fork_exec"),
    ("socket", "create_connection"),
    ("ctypes", "CDLL"),
    ("pty", "spawn"),
    ("marshal", "loads"),
    ("types", "FunctionType"),
    ("pickle", "loads"),
    ("_pickle", "loads"),
    ("dill", "loads"),
    ("bdb", "Bdb"),
    ("idlelib.pyshell", "ModifiedInterpreter"),
    ("evil_package", "run"),
    ("torch.serialization", "load"),
    ("sys", "exit"),
    ("platform", "popen"),
]


def malicious() -> list[Sample]:
    s: list[Sample] = []
    # dangerous callables beyond os.system, several encodings
    for module, name in GADGETS:
        s.append(
            Sample(
                "dangerous callables", f"{module}.{name} p4", c.proto(4, c.call(module, name, "id"))
            )
        )
    for p in range(6):
        body = c.global0("os", "system") + b"(" + c.op_str("id")[0:0] + b"S'id'\ntR"
        s.append(
            Sample(
                "dangerous callables",
                f"os.system protocol {p}",
                (b"\x80" + bytes([p]) if p >= 2 else b"") + body + b".",
            )
        )
    s.append(Sample("dangerous callables", "INST opcode", b"(S'id'\nios\nsystem\n."))
    s.append(Sample("dangerous callables", "OBJ opcode", b"(cos\nsystem\nS'id'\no."))
    s.append(
        Sample(
            "dangerous callables",
            "NEWOBJ on subprocess.Popen",
            c.proto(4, c.stack_global("subprocess", "Popen") + b"(" + c.op_str("id") + b"t\x81"),
        )
    )
    # getattr gadget chain: getattr(builtins-module-ish, 'eval')
    s.append(
        Sample(
            "dangerous callables",
            "getattr gadget",
            c.proto(
                4,
                c.stack_global("builtins", "getattr")
                + b"("
                + c.stack_global("collections", "OrderedDict")
                + c.op_str("x")
                + b"tR("
                + c.op_str("1")
                + b"tR",
            ),
        )
    )
    # STACK_GLOBAL operands: memo-indirected and computed
    s.append(
        Sample(
            "STACK_GLOBAL tricks",
            "memo-indirected operands",
            c.proto(
                4,
                c.op_str("os")
                + b"\x94"
                + b"0"
                + c.op_str("system")
                + b"\x94"
                + b"0"
                + b"h\x00h\x01\x93("
                + c.op_str("id")
                + b"tR",
            ),
        )
    )
    s.append(
        Sample(
            "STACK_GLOBAL tricks",
            "operands built by an allowed call",
            c.proto(
                4,
                c.stack_global("builtins", "str")
                + b"("
                + c.op_bytes(b"os")
                + c.op_str("ascii")
                + b"tR"
                + c.op_str("system")
                + b"\x93("
                + c.op_str("id")
                + b"tR",
            ),
        )
    )
    s.append(
        Sample(
            "STACK_GLOBAL tricks",
            "DUP'd operand",
            c.proto(
                4,
                c.op_str("os")
                + b"2"
                + b"0"
                + c.op_str("system")
                + b"\x93("
                + c.op_str("id")
                + b"tR",
            ),
        )
    )
    s.append(
        Sample(
            "STACK_GLOBAL tricks",
            "EXT extension code",
            c.proto(2, b"\x82\x01(" + c.op_str("id") + b"tR"),
        )
    )
    s.append(
        Sample(
            "STACK_GLOBAL tricks",
            "call of a call result",
            c.proto(4, c.stack_global("collections", "OrderedDict") + b")R)R"),
        )
    )
    s.append(
        Sample(
            "STACK_GLOBAL tricks",
            "BUILD on an imported global",
            c.proto(
                4,
                c.stack_global("torch._utils", "_rebuild_tensor_v2")
                + b"N}("
                + c.op_str("__code__")
                + b"Nu\x86b",
            ),
        )
    )
    # dotted traversal
    for module, name in (
        ("torch._utils", "os.system"),
        ("collections", "OrderedDict.fromkeys"),
        ("builtins", "getattr.__self__"),
        ("numpy", "core.multiarray.os"),
    ):
        s.append(
            Sample(
                "dotted attribute traversal",
                f"{module}:{name}",
                c.proto(4, c.call(module, name, "id")),
            )
        )
    # nested pickle loads
    inner = c.proto(4, c.call("os", "system", "id"))
    s.append(
        Sample(
            "nested pickle loads",
            "pickle.loads(bytes)",
            c.proto(4, c.stack_global("pickle", "loads") + b"(" + c.op_bytes(inner) + b"tR"),
        )
    )
    s.append(
        Sample(
            "nested pickle loads",
            "payload only in embedded bytes",
            c.proto(4, b"}(" + c.op_str("blob") + c.op_bytes(inner) + b"u"),
        )
    )
    s.append(
        Sample(
            "nested pickle loads",
            "torch.load(BytesIO)",
            c.proto(
                4,
                c.stack_global("torch", "load")
                + b"("
                + c.stack_global("io", "BytesIO")
                + b"("
                + c.op_bytes(inner)
                + b"tRtR",
            ),
        )
    )
    # exception-oriented tails
    payload = c.call("os", "system", "id")
    s.append(
        Sample(
            "exception-oriented tails",
            "payload then invalid opcode",
            b"\x80\x04" + payload + b"\xff.",
        )
    )
    s.append(
        Sample(
            "exception-oriented tails",
            "payload then stack underflow",
            b"\x80\x04" + payload + b"0000R.",
        )
    )
    s.append(
        Sample(
            "exception-oriented tails",
            "payload then bad memo read",
            b"\x80\x04" + payload + b"h\x63.",
        )
    )
    s.append(
        Sample(
            "exception-oriented tails",
            "payload then unknown protocol",
            b"\x80\x04" + payload + b"\x80\x09.",
        )
    )
    # broken / truncated (nullifAI)
    s.append(
        Sample(
            "broken/truncated streams",
            "nullifAI: payload then cut",
            b"\x80\x02" + c.global0("os", "system") + b"(S'id'\ntR" + b"}q\x00(X",
        )
    )
    s.append(Sample("broken/truncated streams", "no STOP", b"\x80\x04" + payload))
    s.append(
        Sample(
            "broken/truncated streams",
            "length past the end",
            b"\x80\x04" + payload + b"B\xff\xff\xff\x7fabc",
        )
    )
    s.append(
        Sample(
            "broken/truncated streams",
            "truncated benign pickle",
            pickle.dumps({"a": list(range(100))}, protocol=4)[:-20],
        )
    )
    # data after STOP
    s.append(
        Sample(
            "data after STOP",
            "second pickle carries the payload",
            pickle.dumps({"ok": 1}, protocol=4) + c.proto(4, payload),
        )
    )
    s.append(
        Sample(
            "data after STOP",
            "junk after STOP",
            pickle.dumps({"ok": 1}, protocol=4) + b"\x00\x01" + os.urandom(64),
        )
    )
    s.append(
        Sample(
            "data after STOP",
            "legacy torch with extra bytes",
            c.torch_legacy(c.state_dict(2), trailing=b"\x00" * 100),
        )
    )
    s.append(
        Sample(
            "data after STOP",
            "npy with hidden tail",
            c.npy("<f4", (2,), b"\x00" * 8 + c.proto(4, payload)),
        )
    )
    # zip tricks
    evil_pkl = c.proto(2, c.global0("os", "system")[0:0] + b"cos\nsystem\n(S'id'\ntR")
    benign_pkl, stores = c.torch_pickle(c.state_dict(2))
    good_zip = c.torch_zip(benign_pkl, stores)
    s.append(
        Sample("zip: bad CRC", "data.pkl CRC flipped", c.corrupt_crc(good_zip, "archive/data.pkl"))
    )
    s.append(
        Sample(
            "zip: bad CRC",
            "payload with bad CRC",
            c.corrupt_crc(c.zip_bytes({"archive/data.pkl": evil_pkl}), "archive/data.pkl"),
        )
    )
    s.append(
        Sample(
            "zip: mismatched names",
            "central directory name differs",
            c.rename_in_central_directory(
                c.zip_bytes({"archive/data.pkl": evil_pkl}), "archive/data.pkl", "archive/data.pkk"
            ),
        )
    )
    s.append(
        Sample("zip: mismatched names", "duplicate member names", _dup_zip(benign_pkl, evil_pkl))
    )
    s.append(
        Sample(
            "zip: mismatched names",
            "encrypted flag set",
            _flag_encrypted(c.zip_bytes({"archive/data.pkl": evil_pkl})),
        )
    )
    # wrong extensions
    s.append(
        Sample(
            "wrong file extensions", "pickle named config.json", c.proto(4, payload), "config.json"
        )
    )
    s.append(
        Sample(
            "wrong file extensions",
            "protocol-0 pickle named README.md",
            b"cos\nsystem\n(S'id'\ntR.",
            "README.md",
        )
    )
    s.append(
        Sample(
            "wrong file extensions",
            "torch zip named model.safetensors",
            c.zip_bytes({"archive/data.pkl": evil_pkl}),
            "model.safetensors",
        )
    )
    s.append(
        Sample(
            "wrong file extensions",
            "payload in a zip member named .txt",
            c.torch_zip(benign_pkl, stores)[:0]
            + c.zip_bytes({"archive/data.pkl": benign_pkl, "archive/notes.txt": evil_pkl}),
        )
    )
    s.append(
        Sample(
            "wrong file extensions",
            "payload in data/0-like member of plain zip",
            c.zip_bytes({"weights/0": evil_pkl}),
        )
    )
    # archives inside archives
    s.append(
        Sample(
            "archives inside archives",
            "zip in zip",
            c.zip_bytes({"outer/inner.zip": c.zip_bytes({"a/data.pkl": evil_pkl})}),
        )
    )
    s.append(Sample("archives inside archives", "gzip'd pickle", c.gzip_bytes(evil_pkl)))
    s.append(
        Sample(
            "archives inside archives",
            "tar of zip of pickle",
            c.tar_bytes({"m.zip": c.zip_bytes({"a/data.pkl": evil_pkl})}),
        )
    )
    s.append(
        Sample(
            "archives inside archives",
            "deflated zip member",
            c.zip_bytes({"a/data.pkl": evil_pkl}, zipfile.ZIP_DEFLATED),
        )
    )
    s.append(
        Sample(
            "archives inside archives",
            "7z (unscannable)",
            b"7z\xbc\xaf\x27\x1c\x00\x04" + os.urandom(100),
        )
    )
    s.append(
        Sample(
            "archives inside archives", "zstd (unscannable)", b"\x28\xb5\x2f\xfd" + os.urandom(100)
        )
    )
    s.append(Sample("archives inside archives", "bz2 pickle", __import__("bz2").compress(evil_pkl)))
    s.append(Sample("archives inside archives", "xz pickle", __import__("lzma").compress(evil_pkl)))
    # numpy / joblib
    s.append(Sample("numpy object arrays", "npy object array", c.npy("|O", (1,), evil_pkl)))
    s.append(
        Sample(
            "numpy object arrays",
            "benign-looking object array",
            c.npy("|O", (2,), pickle.dumps([1, 2], protocol=3)),
        )
    )
    s.append(
        Sample(
            "numpy object arrays",
            "npz with object member",
            c.npz(
                {"x.npy": c.npy("<f8", (2,), b"\x00" * 16), "y.npy": c.npy("|O", (1,), evil_pkl)}
            ),
        )
    )
    s.append(
        Sample("joblib", "object array with payload", c.joblib_pickle(object_payload=evil_pkl))
    )
    s.append(
        Sample(
            "joblib",
            "payload after the raw array",
            c.joblib_pickle(after=c.op_str("x") + c.call("os", "system", "id")),
        )
    )
    # ONNX
    s.append(
        Sample(
            "ONNX",
            "external data ../",
            c.onnx_model(initializers=[c.onnx_tensor("w", location="../../etc/passwd")]),
            "model.onnx",
        )
    )
    s.append(
        Sample(
            "ONNX",
            "external data absolute",
            c.onnx_model(initializers=[c.onnx_tensor("w", location="/etc/shadow")]),
            "model.onnx",
        )
    )
    s.append(
        Sample(
            "ONNX",
            "custom operator domain",
            c.onnx_model(
                nodes=[c.pb(1, "X") + c.pb(2, "Y") + c.pb(4, "Exec") + c.pb(7, "evil.ops")],
                opsets=("", "evil.ops"),
            ),
            "model.onnx",
        )
    )
    s.append(
        Sample(
            "ONNX",
            "custom op inside a Loop body",
            c.onnx_model(
                nodes=[
                    c.pb(1, "X")
                    + c.pb(2, "Y")
                    + c.pb(4, "Loop")
                    + c.pb(
                        5,
                        c.pb(1, "body")
                        + c.pb(6, c.pb(1, c.pb(4, "Exec") + c.pb(7, "evil.ops")) + c.pb(2, "body")),
                    )
                ]
            ),
            "model.onnx",
        )
    )
    return s


def _dup_zip(first: bytes, second: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", first)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            z.writestr("archive/data.pkl", second)
    return buf.getvalue()


def _flag_encrypted(data: bytes) -> bytes:
    raw = bytearray(data)
    pos = data.find(b"PK\x01\x02")
    raw[pos + 8] |= 1
    return bytes(raw)


# --------------------------------------------------------------------------- benign


def benign() -> list[Sample]:
    s: list[Sample] = []
    sd, stores = c.torch_pickle(c.state_dict(6))
    s.append(Sample("torch zip", "state dict", c.torch_zip(sd, stores), "model.pt"))
    sd4, stores4 = c.torch_pickle(c.state_dict(6), protocol=4)
    s.append(Sample("torch zip", "state dict protocol 4", c.torch_zip(sd4, stores4)))
    ck, ck_stores = c.torch_pickle(c.training_checkpoint)
    s.append(Sample("torch zip", "training checkpoint", c.torch_zip(ck, ck_stores), "ckpt.pt"))
    s.append(
        Sample(
            "torch zip",
            "HF pytorch_model.bin",
            c.torch_zip(sd, stores, prefix="pytorch_model"),
            "pytorch_model.bin",
        )
    )
    s.append(
        Sample(
            "torch zip",
            "deflated torch zip",
            c.torch_zip(sd, stores, compress=zipfile.ZIP_DEFLATED),
        )
    )
    s.append(Sample("torch legacy", "legacy format", c.torch_legacy(c.state_dict(3))))
    s.append(
        Sample(
            "torch legacy",
            "legacy training checkpoint",
            c.torch_legacy(lambda m: {"epoch": 3, "model": c.state_dict(2)(m)}),
        )
    )
    s.append(Sample("torch legacy", "tar format", c.torch_tar(), "old.tar"))
    s.append(
        Sample(
            "safetensors",
            "safetensors",
            c.safetensors(
                {"w": ("F32", (2, 2), os.urandom(16)), "b": ("F16", (2,), os.urandom(4))}
            ),
            "model.safetensors",
        )
    )
    s.append(Sample("numpy", "npy float32", c.npy("<f4", (3, 4), os.urandom(48)), "a.npy"))
    s.append(Sample("numpy", "npy int64 v2", c.npy("<i8", (5,), os.urandom(40), version=2)))
    s.append(
        Sample(
            "numpy",
            "npy structured",
            c.npy("[('a', '<f4'), ('b', '<i2', (2,))]", (2,), os.urandom(16)),
        )
    )
    s.append(
        Sample(
            "numpy",
            "npz stored",
            c.npz({"a.npy": c.npy("<f4", (2,), b"\x00" * 8), "b.npy": c.npy("|u1", (3,), b"abc")}),
        )
    )
    s.append(
        Sample(
            "numpy",
            "npz deflated",
            c.npz({"a.npy": c.npy("<f8", (100,), b"\x00" * 800)}, zipfile.ZIP_DEFLATED),
        )
    )
    for p in range(6):
        s.append(
            Sample(
                "plain pickles",
                f"dict protocol {p}",
                pickle.dumps(
                    {"a": 1, "b": [1.5, "x", b"y", None, True], "c": (1, 2), "d": {3}}, protocol=p
                ),
            )
        )
        s.append(
            Sample(
                "plain pickles",
                f"OrderedDict protocol {p}",
                pickle.dumps(
                    collections.OrderedDict(a=1, b=collections.OrderedDict(c=[1, 2])), protocol=p
                ),
            )
        )
    s.append(
        Sample(
            "plain pickles",
            "many concatenated pickles",
            b"".join(pickle.dumps(i, protocol=4) for i in range(10)),
        )
    )
    s.append(Sample("plain pickles", "large list", pickle.dumps(list(range(200_000)))))
    s.append(
        Sample(
            "plain pickles",
            "bytes that start like a pickle",
            pickle.dumps({"w": b"\x80\x02" + os.urandom(5000)}, protocol=4),
        )
    )
    s.append(Sample("joblib", "joblib numeric arrays", c.joblib_pickle(), "model.joblib"))
    s.append(
        Sample(
            "ONNX",
            "onnx model",
            c.onnx_model(
                initializers=[
                    c.onnx_tensor("w", raw=os.urandom(64)),
                    c.onnx_tensor("ext", location="weights/ext.bin"),
                ]
            ),
            "model.onnx",
        )
    )
    s.append(
        Sample(
            "ONNX",
            "onnx with com.microsoft ops",
            c.onnx_model(
                nodes=[
                    c.pb(1, "X") + c.pb(2, "Y") + c.pb(4, "FusedMatMul") + c.pb(7, "com.microsoft")
                ],
                opsets=("", "com.microsoft"),
            ),
            "model.onnx",
        )
    )
    s.append(Sample("text and data", "config.json", b'{"hidden_size": 768}\n', "config.json"))
    s.append(
        Sample(
            "text and data",
            "tokenizer text",
            b"(this line starts with a paren\nand goes on)\n",
            "merges.txt",
        )
    )
    s.append(Sample("text and data", "random binary", os.urandom(4096), "blob.bin"))
    name = b"general.name"
    gguf = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(name)) + name
    gguf += struct.pack("<IQ", 8, 4) + b"tiny"  # one string value; no tensors
    s.append(Sample("text and data", "gguf", gguf))
    s.append(Sample("text and data", "empty file", b""))
    return s


def _table(title: str, rows: dict[str, list[bool]]) -> str:
    lines = [title, f"  {'family':<32} {'samples':>7} {'flagged':>7}"]
    for family, flags in rows.items():
        lines.append(f"  {family:<32} {len(flags):>7} {sum(flags):>7}")
    total = [f for flags in rows.values() for f in flags]
    lines.append(f"  {'TOTAL':<32} {len(total):>7} {sum(total):>7}")
    return "\n".join(lines)


def _scan_sample(sample: Sample, tmp_path: Path) -> tuple[str, list[str]]:
    directory = (
        tmp_path
        / sample.family.replace(" ", "_").replace("/", "_")
        / sample.name.replace(" ", "_").replace("/", "_")
    )
    directory.mkdir(parents=True)
    path = directory / sample.filename
    path.write_bytes(sample.data)
    if sample.family == "ONNX" and sample.name == "onnx model":
        (directory / "weights").mkdir()
        (directory / "weights" / "ext.bin").write_bytes(b"\x00" * 8)
    report = scan_paths([str(path)])
    return report.verdict, [
        f"{f.rule}:{f.global_name or ''}" for f in report.findings
    ] + report.errors


def test_corpus_detection_and_false_positives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    detected: dict[str, list[bool]] = collections.defaultdict(list)
    missed: list[str] = []
    for sample in malicious():
        verdict, why = _scan_sample(sample, tmp_path / "bad")
        detected[sample.family].append(verdict == "unsafe")
        if verdict != "unsafe":
            missed.append(f"{sample.family} / {sample.name}: {verdict} {why}")
    flagged: dict[str, list[bool]] = collections.defaultdict(list)
    false_positives: list[str] = []
    for sample in benign():
        verdict, why = _scan_sample(sample, tmp_path / "good")
        flagged[sample.family].append(verdict != "clean")
        if verdict != "clean":
            false_positives.append(f"{sample.family} / {sample.name}: {verdict} {why}")
    with capsys.disabled():
        print()
        print(_table("MALICIOUS corpus (flagged = detected)", detected))
        print(_table("BENIGN corpus (flagged = false positive)", flagged))
    assert not missed, "\n".join(missed)
    assert not false_positives, "\n".join(false_positives)


@pytest.mark.parametrize("sample", malicious(), ids=lambda s: f"{s.family}/{s.name}")
def test_every_malicious_sample_has_a_located_reason(sample: Sample) -> None:
    report = scan_bytes(sample.data, name=sample.filename)
    assert report.verdict == "unsafe"
    assert all(f.rule and f.message for f in report.findings)


def test_allow_global_extends_the_allowlist() -> None:
    data = pickle.dumps(collections.Counter("ab"), protocol=4)
    assert scan_bytes(data).verdict == "clean"
    custom = c.proto(4, c.call("mypkg.config", "ModelConfig", "x"))
    assert scan_bytes(custom).verdict == "unsafe"
    policy = ScanPolicy(extra_allowed_globals=frozenset({"mypkg.config.ModelConfig"}))
    assert scan_bytes(custom, policy=policy).verdict == "clean"
    wildcard = ScanPolicy(extra_allowed_globals=frozenset({"mypkg.*"}))
    assert scan_bytes(custom, policy=wildcard).verdict == "clean"
    dotted = c.proto(4, c.call("mypkg", "config.os.system", "x"))
    assert scan_bytes(dotted, policy=wildcard).verdict == "unsafe"


def test_findings_name_file_member_offset_and_global(tmp_path: Path) -> None:
    evil = c.proto(4, c.call("os", "system", "id"))
    path = tmp_path / "m.pt"
    path.write_bytes(c.zip_bytes({"archive/data.pkl": evil}))
    finding = scan_paths([str(path)]).findings[0]
    assert finding.path == str(path) and finding.member == "archive/data.pkl"
    assert finding.global_name == "os.system" and finding.offset is not None
    assert finding.rule == "dangerous-global" and "shell" in finding.message


def test_joblib_protocol_is_followed_exactly() -> None:
    data = c.joblib_pickle()
    assert scan_bytes(data).verdict == "clean"
    assert scan_bytes(data[:-10]).verdict == "unsafe"  # array bytes cut short
