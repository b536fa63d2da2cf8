"""safetensors and GGUF: files written by the real ``safetensors`` and ``gguf`` packages are
clean and named by their format; hostile headers get a clear finding, never a crash, a hang
or a read of what they claim."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from safetensors.numpy import save_file

from modelward.integrity.commands import main
from modelward.integrity.scanning import scan_bytes, scan_paths
from modelward.integrity.scanning import weights as w

# --------------------------------------------------------------------------- real files


def _real_safetensors(path: Path) -> Path:
    save_file(
        {
            "embed": np.arange(24, dtype=np.float32).reshape(4, 6),
            "bias": np.zeros(3, dtype=np.float16),
            "ids": np.array([1, 2, 3], dtype=np.int64),
            "mask": np.array([True, False]),
            "empty": np.zeros((0, 4), dtype=np.float32),
        },
        str(path),
        metadata={"format": "pt", "source": "modelward tests"},
    )
    return path


def _real_gguf(path: Path, *, alignment: int | None = None) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    writer.add_block_count(2)
    writer.add_context_length(128)
    writer.add_float32("test.scale", 0.5)
    writer.add_bool("test.flag", True)
    writer.add_string("general.name", "tiny")
    writer.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "hello", "world"])
    writer.add_array("tokenizer.ggml.scores", [0.0, 0.0, -1.5, -2.5])
    writer.add_tensor("token_embd.weight", np.ones((4, 32), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(32, dtype=np.float16))
    q8 = np.zeros((1, 68), dtype=np.uint8)  # two Q8_0 blocks: 2 x 32 elements
    writer.add_tensor("blk.0.attn_q.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_real_safetensors_and_gguf_are_clean_and_named(tmp_path: Path) -> None:
    files = [
        _real_safetensors(tmp_path / "model.safetensors"),
        _real_gguf(tmp_path / "model.gguf"),
        _real_gguf(tmp_path / "aligned.gguf", alignment=64),
    ]
    report = scan_paths([str(f) for f in files])
    assert report.verdict == "clean", [f.message for f in report.findings]
    assert [f.format for f in report.files] == ["safetensors", "gguf", "gguf"]


def test_scan_output_names_both_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _real_safetensors(tmp_path / "a.safetensors")
    _real_gguf(tmp_path / "b.gguf")
    assert main(["scan", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 gguf" in out and "1 safetensors" in out and "unknown" not in out


def test_the_ggml_block_table_is_the_gguf_packages() -> None:
    assert {int(k): v for k, v in gguf.GGML_QUANT_SIZES.items()} == dict(w.GGML_BLOCKS)


# --------------------------------------------------------------------------- hostile safetensors


def _st(header: Any, data: bytes = b"", *, length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def _one(dtype: str, shape: list[int], offsets: list[int]) -> dict[str, Any]:
    return {"t": {"dtype": dtype, "shape": shape, "data_offsets": offsets}}


SAFETENSORS_CASES = {
    "huge header length": (_st(_one("F32", [1], [0, 4]), b"\0" * 4, length=1 << 62), "limit"),
    "header past the end": (_st(_one("F32", [1], [0, 4]), length=5000), "past the end"),
    "offsets past the end": (_st(_one("F32", [4], [0, 16]), b"\0" * 8), "ends at byte 16"),
    "overlapping": (
        _st(
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\0" * 12,
        ),
        "overlaps",
    ),
    "hole": (
        _st(
            {
                "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
            },
            b"\0" * 12,
        ),
        "hole",
    ),
    "shape does not fit": (_st(_one("F32", [1 << 40, 1 << 40], [0, 8]), b"\0" * 8), "exactly"),
    "unknown dtype": (_st(_one("PYOBJ", [1], [0, 8]), b"\0" * 8), "unknown dtype"),
    "negative offsets": (_st(_one("U8", [1], [-1, 0]), b"\0"), "data_offsets"),
    "duplicate keys": (
        _st(b'{"t":{"dtype":"U8","shape":[],"data_offsets":[0,1]},"t":1}', b"\0"),
        "duplicate",
    ),
    "metadata not strings": (_st({"__metadata__": {"a": {"b": 1}}}), "strings to strings"),
    "deeply nested": (_st(b'{"dtype":' + b"[" * 200_000 + b"]" * 200_000 + b"}"), "nested"),
    "truncated": (_st(_one("U8", [1], [0, 1]))[:30], None),
}


@pytest.mark.parametrize("case", list(SAFETENSORS_CASES))
def test_hostile_safetensors_get_a_clear_finding(case: str) -> None:
    data, words = SAFETENSORS_CASES[case]
    report = scan_bytes(data, name="model.safetensors")
    assert report.verdict == "unsafe" and not report.errors
    (finding,) = report.findings
    assert finding.rule == "safetensors-malformed"
    assert words is None or words in finding.message, finding.message


# --------------------------------------------------------------------------- hostile GGUF


def _gstr(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def _kv(key: bytes, kind: int, payload: bytes) -> bytes:
    return _gstr(key) + struct.pack("<I", kind) + payload


def _tensor(name: bytes, dims: list[int], kind: int, offset: int) -> bytes:
    return (
        _gstr(name)
        + struct.pack("<I", len(dims))
        + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<II", kind, 0)[:4]
        + struct.pack("<Q", offset)
    )


def _gguf(
    kvs: list[bytes],
    tensors: list[bytes],
    data: bytes = b"",
    *,
    version: int = 3,
    n_kv: int | None = None,
    n_t: int | None = None,
) -> bytes:
    head = b"GGUF" + struct.pack(
        "<IQQ", version, len(tensors) if n_t is None else n_t, len(kvs) if n_kv is None else n_kv
    )
    body = head + b"".join(kvs) + b"".join(tensors)
    body += b"\0" * (-len(body) % 32)
    return body + data


F32 = 0
GGUF_CASES = {
    "version 1": (_gguf([], [], version=1), "version 1"),
    "2**63 metadata entries": (_gguf([], [], n_kv=1 << 63), "metadata entries"),
    "2**63 tensors": (_gguf([], [], n_t=1 << 63), "tensor entries"),
    "huge key": (_gguf([struct.pack("<Q", 1 << 62)], [], n_kv=1), "bytes but only"),
    "huge string value": (
        _gguf([_kv(b"general.name", 8, struct.pack("<Q", 1 << 62))], []),
        "bytes but only",
    ),
    "huge array": (
        _gguf([_kv(b"tokens", 9, struct.pack("<IQ", 8, 1 << 60))], []),
        "more than",
    ),
    "arrays nested deep": (
        _gguf(
            [
                _kv(
                    b"a",
                    9,
                    struct.pack("<IQ", 9, 1)
                    + struct.pack("<IQ", 9, 1)
                    + struct.pack("<IQ", 4, 1)
                    + b"\0" * 4,
                )
            ],
            [],
        ),
        "nested",
    ),
    "unknown value type": (_gguf([_kv(b"a", 77, b"\0" * 8)], []), "unknown metadata value type"),
    "bad alignment": (
        _gguf([_kv(b"general.alignment", 4, struct.pack("<I", 24))], []),
        "power-of-two",
    ),
    "offset past the end": (
        _gguf([], [_tensor(b"w", [8], F32, 1 << 40)], b"\0" * 32),
        "ends at byte",
    ),
    "overlapping tensors": (
        _gguf([], [_tensor(b"a", [8], F32, 0), _tensor(b"b", [8], F32, 0)], b"\0" * 32),
        "overlaps",
    ),
    "misaligned offset": (_gguf([], [_tensor(b"w", [1], F32, 4)], b"\0" * 32), "aligned"),
    "too many dimensions": (_gguf([], [_tensor(b"w", [1] * 9, F32, 0)], b"\0" * 32), "dimensions"),
    "unknown ggml type": (_gguf([], [_tensor(b"w", [1], 99, 0)], b"\0" * 32), "unknown ggml type"),
    "block size": (_gguf([], [_tensor(b"w", [33], 8, 0)], b"\0" * 64), "multiple of 32"),
    "duplicate names": (
        _gguf([], [_tensor(b"w", [1], F32, 0), _tensor(b"w", [1], F32, 32)], b"\0" * 64),
        "twice",
    ),
    "dims claim more than the file": (
        _gguf([], [_tensor(b"w", [1 << 40, 1 << 40], F32, 0)], b"\0" * 32),
        "more than the file",
    ),
    "truncated": (_gguf([_kv(b"general.name", 8, _gstr(b"x"))], [])[:30], None),
}


@pytest.mark.parametrize("case", list(GGUF_CASES))
def test_hostile_gguf_gets_a_clear_finding(case: str) -> None:
    data, words = GGUF_CASES[case]
    report = scan_bytes(data, name="model.gguf")
    assert report.verdict == "unsafe" and not report.errors, report.findings
    (finding,) = report.findings
    assert finding.rule == "gguf-malformed"
    assert words is None or words in finding.message, finding.message


def test_gguf_metadata_work_is_bounded_by_an_item_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many small strings cost Python time per item: past the budget the file is refused,
    and the work done stays proportional to the budget, not to what the file claims."""
    monkeypatch.setattr(w, "MAX_GGUF_ITEMS", 1000)
    strings = b"".join(_gstr(b"") for _ in range(1001))
    data = _gguf([_kv(b"tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 1001) + strings)], [])
    (finding,) = scan_bytes(data, name="m.gguf").findings
    assert "more than 1000 items" in finding.message
    ok = _gguf([_kv(b"tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 1000) + strings[:8000])], [])
    assert scan_bytes(ok, name="m.gguf").verdict == "clean"


def test_a_truncated_real_gguf_is_reported_not_crashed(tmp_path: Path) -> None:
    path = _real_gguf(tmp_path / "m.gguf")
    data = path.read_bytes()
    for cut in (10, 40, 200, len(data) - 200):
        report = scan_bytes(data[:cut], name="m.gguf")
        assert report.verdict == "unsafe" and not report.errors
        assert report.findings[0].rule == "gguf-malformed"
