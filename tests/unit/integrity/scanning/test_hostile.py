"""Hostile input never crashes or hangs the scanner: every case ends, fast, with a finding
(or an error that says why), and memory stays bounded."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib

import pytest

from modelward.integrity.scanning import ScanPolicy, scan_bytes

from . import corpus as c


def _scan(data: bytes, policy: ScanPolicy | None = None) -> tuple[str, set[str]]:
    """Scan; the work charged (bytes decompressed or read from members) stays within the
    file's budget plus the one charge that crossed it, whatever the input claims."""
    policy = policy or ScanPolicy()
    report = scan_bytes(data, policy=policy)
    (scan,) = report.files
    assert scan.expanded <= 2 * policy.expansion_budget(len(data)), "work beyond the budget"
    return report.verdict, {f.rule for f in report.findings}


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def nested_zip(levels: int, copies: int, inner: int = 48 << 20) -> bytes:
    """Zips of zips: ``copies**levels`` members of ``inner`` zero bytes, a few KB on disk;
    each member stays under the per-member ratio check (64 MiB)."""
    data = _zip([("zeros.bin", b"\0" * inner)])
    for level in range(levels):
        data = _zip([(f"l{level}-{i}.zip", data) for i in range(copies)])
    return data


@pytest.mark.parametrize(("levels", "copies"), [(2, 8), (3, 8), (4, 4)])
def test_nested_zips_exhaust_the_budget_not_the_cpu(levels: int, copies: int) -> None:
    """Judged CLEAN after 278 s of CPU before the budget; now a finding, and the work done
    is bounded by the budget of a small file (256 MiB), however deep and wide the nest."""
    data = nested_zip(levels, copies)
    assert len(data) < 16_000
    report = scan_bytes(data)
    assert report.verdict == "unsafe"
    bomb = [f for f in report.findings if f.rule == "archive-bomb"]
    assert bomb and "budget exceeded" in bomb[0].message and bomb[0].member
    assert report.files[0].expanded <= ScanPolicy().expansion_floor + (64 << 20)


def test_many_members_under_the_ratio_limit_are_a_bomb() -> None:
    """Members of 16 MiB of zeros: each passes the ratio check (it starts at 64 MiB),
    together they exceed the budget (lowered here to keep the test small)."""
    data = _zip([(f"m{i}.bin", b"\0" * (16 << 20)) for i in range(4)])
    policy = ScanPolicy(expansion_floor=32 << 20)
    verdict, rules = _scan(data, policy)
    assert verdict == "unsafe" and "archive-bomb" in rules
    assert _scan(data, ScanPolicy(expansion_floor=128 << 20))[0] == "clean"


def test_budget_grows_with_the_file_and_has_a_ceiling() -> None:
    policy = ScanPolicy()
    assert policy.expansion_budget(15_000) == 256 << 20
    assert policy.expansion_budget(10 << 20) == 1000 << 20
    assert policy.expansion_budget(1 << 30) == (16 << 30) + (1 << 30)
    assert policy.expansion_budget(1 << 40) == (16 << 30) + (1 << 40)
    small = ScanPolicy(expansion_floor=1 << 20, max_expansion_bytes=1 << 20)
    compressed = c.gzip_bytes(pickle.dumps(b"\0" * (2 << 20), protocol=4))
    assert _scan(compressed)[0] == "clean"
    assert _scan(compressed, small) == ("unsafe", {"archive-bomb"})


def _structured_samples() -> dict[str, bytes]:
    sd, stores = c.torch_pickle(c.state_dict(2))
    return {
        "pickle": pickle.dumps({"a": [1, 2, 3], "b": "x" * 50}, protocol=4),
        "pickle-p0": pickle.dumps({"a": [1, 2, 3]}, protocol=0),
        "torch-zip": c.torch_zip(sd, stores),
        "torch-legacy": c.torch_legacy(c.state_dict(1)),
        "npy": c.npy("<f4", (4,), b"\x00" * 16),
        "joblib": c.joblib_pickle(),
        "onnx": c.onnx_model(initializers=[c.onnx_tensor("w", raw=b"\x00" * 16)]),
    }


@pytest.mark.parametrize("name", list(_structured_samples()))
def test_every_truncation_is_reported(name: str) -> None:
    data = _structured_samples()[name]
    step = max(1, len(data) // 200)
    for cut in range(12, len(data) - 1, step):
        verdict, rules = _scan(data[:cut])
        assert verdict == "unsafe", f"{name} cut at {cut}/{len(data)}: {verdict}"
        assert rules, f"{name} cut at {cut}: no reason"


def test_deep_marks_and_containers() -> None:
    assert _scan(b"\x80\x04" + b"(" * 200_000 + b"N.")[0] == "clean"
    assert _scan(b"\x80\x04" + b"]" * 100_000 + b"a" * 99_999 + b".")[0] == "clean"
    nested = b"\x80\x04" + b"]" * 300_000 + b"N" + b"a" * 300_000 + b"."
    assert _scan(nested)[0] in ("clean", "unsafe")


def test_stack_limit() -> None:
    policy = ScanPolicy(max_stack=10_000)
    verdict, rules = _scan(b"\x80\x04" + b"N" * 20_000 + b".", policy)
    assert verdict == "unsafe" and rules == {"malformed-pickle"}


@pytest.mark.parametrize(
    "opcode",
    [
        b"B\xff\xff\xff\x7f",
        b"\x8e" + b"\xff" * 8,
        b"\x8d" + b"\xff" * 7 + b"\x7f",
        b"X\xff\xff\xff\xff",
        b"\x8b\xff\xff\xff\x7f",
        b"\x96" + b"\xff" * 8,
    ],
)
def test_huge_claimed_lengths(opcode: bytes) -> None:
    verdict, rules = _scan(b"\x80\x04" + opcode + b"abc.")
    assert verdict == "unsafe" and "malformed-pickle" in rules


def test_huge_memo_index_and_long_lines() -> None:
    assert _scan(b"\x80\x04Nr\xff\xff\xff\xffj\xff\xff\xff\xff.")[0] == "clean"
    assert "malformed-pickle" in _scan(b"\x80\x04j\x00\x00\x00\x01.")[1]
    assert _scan(b"c" + b"a" * 200_000 + b"\nb\n.")[0] == "unsafe"
    # a long first text argument must not push the payload out of the format probe
    padded = b"S'" + b"x" * 200_000 + b"'\n0cos\nsystem\n(S'id'\ntR."
    assert "dangerous-global" in _scan(padded)[1]
    assert "malformed-pickle" in _scan(b"I" + b"9" * 100_000 + b"\n.")[1]


def test_zip_bomb_is_bounded() -> None:
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z,
        z.open("archive/data.pkl", "w", force_zip64=True) as member,
    ):
        chunk = b"\x00" * (1 << 20)
        for _ in range(1024):  # 1 GiB of zeros, ~1 MiB compressed
            member.write(chunk)
    verdict, rules = _scan(buf.getvalue())
    assert verdict == "unsafe" and "archive-bomb" in rules


def test_gzip_bomb_is_bounded() -> None:
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    data = b"".join(comp.compress(b"\x00" * (1 << 20)) for _ in range(512)) + comp.flush()
    verdict, rules = _scan(data)
    assert verdict == "unsafe" and "archive-bomb" in rules


def test_recursive_archives_stop_at_the_depth_limit() -> None:
    data = c.proto(4, c.call("collections", "OrderedDict"))
    for i in range(12):
        data = c.zip_bytes({f"level{i}/inner.zip": data}) if i % 2 else c.gzip_bytes(data)
    verdict, rules = _scan(data)
    assert verdict == "unsafe" and "nesting-too-deep" in rules


def test_embedded_pickles_recursion_bounded() -> None:
    data = c.proto(4, c.call("os", "system", "id"))
    for _ in range(50):
        data = c.proto(4, c.op_bytes(data * 1) + b"0N")
    verdict, rules = _scan(data)
    assert verdict == "unsafe" and "nesting-too-deep" in rules


def test_onnx_hostile() -> None:
    graph = c.pb(2, "g")
    for _ in range(100):  # If -> then_branch -> If -> ...
        graph = c.pb(2, "g") + c.pb(
            1, c.pb(4, "If") + c.pb(5, c.pb(1, "then_branch") + c.pb(6, graph))
        )
    model = c.pb(1, 9) + c.pb(7, graph)
    verdict, rules = _scan(model)
    assert verdict == "unsafe" and "onnx-malformed" in rules
    bad_len = c.pb(1, 9) + b"\x3a\xff\xff\xff\xff\x0f" + b"x" * 10
    assert "onnx-malformed" in _scan(bad_len)[1]


def test_npy_hostile_headers() -> None:
    assert "numpy-malformed" in _scan(b"\x93NUMPY\x02\x00" + struct.pack("<I", 1 << 30))[1]
    assert "numpy-malformed" in _scan(b"\x93NUMPY\x01\x00\x10\x00" + b"(" * 16)[1]
    deep = "{'descr': " + "[" * 5000 + "]" * 5000 + ", 'fortran_order': False, 'shape': ()}"
    header = deep.encode()
    assert (
        "numpy-malformed"
        in _scan(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header)[1]
    )
    assert "numpy-malformed" in _scan(c.npy("<f8", (1 << 40,), b"\x00" * 8))[1]


def test_safetensors_hostile() -> None:
    assert _scan(struct.pack("<Q", 20) + b'{"a": {"data_offsets": [0, 999]}}')[0] == "unsafe"
    assert _scan(struct.pack("<Q", 10) + b"{not json!")[0] == "unsafe"


def test_random_garbage_never_crashes() -> None:
    import random

    rng = random.Random(1234)
    base = list(_structured_samples().values())
    for i in range(400):
        data = bytearray(base[i % len(base)])
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        report = scan_bytes(bytes(data))
        assert report.verdict in ("clean", "unsafe", "error")
        assert not report.errors, report.errors
