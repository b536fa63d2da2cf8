"""Parallel streaming hashing: same digests as hashlib, bounded buffers, shard ranges."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from blake3 import blake3

from modelward.integrity.errors import ModelPathError, UnsupportedFormatError
from modelward.integrity.hashing import (
    CHUNK_SIZE,
    HashItem,
    available_cpus,
    hash_items,
    shard_ranges,
)


def test_matches_hashlib(tmp_path: Path) -> None:
    sizes = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 17]
    items = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"f{i}"
        path.write_bytes(os.urandom(size))
        items.append(HashItem(key=f"f{i}", path=str(path), size=size))
    algorithms = (("sha256", hashlib.sha256), ("blake2b", hashlib.blake2b), ("blake3", blake3))
    for hash_type, fn in algorithms:
        for workers in (1, 3):
            digests = hash_items(items, hash_type=hash_type, workers=workers)
            for item in items:
                assert digests[item.key] == fn(Path(item.path).read_bytes()).digest()


def test_ranges(tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 5)
    path = tmp_path / "f"
    path.write_bytes(data)
    ranges = shard_ranges(len(data), 1000)
    items = [
        HashItem(key=f"{s}", path=str(path), size=len(data), start=s, end=e) for s, e in ranges
    ]
    digests = hash_items(items, hash_type="sha256", workers=2)
    assert all(digests[f"{s}"] == hashlib.sha256(data[s:e]).digest() for s, e in ranges)
    assert shard_ranges(0, 10) == [] and shard_ranges(10, 10) == [(0, 10)]
    assert shard_ranges(11, 10) == [(0, 10), (10, 11)]


def test_file_changed_while_reading(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    with pytest.raises(ModelPathError, match="early"):
        hash_items([HashItem(key="f", path=str(path), size=10)], hash_type="sha256")
    with pytest.raises(ModelPathError, match="grew"):
        hash_items([HashItem(key="f", path=str(path), size=1)], hash_type="sha256")


def test_fifo_is_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "p")
    with pytest.raises(ModelPathError, match="regular file"):
        hash_items([HashItem(key="p", path=str(tmp_path / "p"), size=0)], hash_type="sha256")


def test_unsupported_algorithm() -> None:
    with pytest.raises(UnsupportedFormatError):
        hash_items([], hash_type="sha1")


def test_available_cpus() -> None:
    assert 1 <= available_cpus() <= (os.cpu_count() or 1)
