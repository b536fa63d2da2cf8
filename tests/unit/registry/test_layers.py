"""Layer listing: tar headers streamed through gzip/zstd, whiteouts folded, bounds kept."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest
import zstandard

from modelward.engine.policy import PACKAGE_MANAGER_NAMES, SHELL_NAMES, ForbiddenContents
from modelward.registry.layers import (
    LayerError,
    LayerListing,
    final_paths,
    list_layer,
)

CONTENTS = ForbiddenContents(SHELL_NAMES + PACKAGE_MANAGER_NAMES, ("etc/shadow",))


def tar(entries: dict[str, bytes | None], *, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar with files (bytes) and directories (None), in insertion order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("chunk", [1, 7, 512, 1 << 16])
def test_forbidden_paths_are_found_whatever_the_chunking(chunk: int) -> None:
    layer = tar({"bin/": None, "bin/sh": b"x" * 1000, "usr/bin/pip3.11": b"", "app/main": b"y"})
    listing = list_layer(chunks(gzip.compress(layer), chunk), media_type="", contents=CONTENTS)
    assert listing.matches == {"bin/sh", "usr/bin/pip3.11"}
    assert listing.entries == 4


def test_zstd_and_plain_layers_are_read() -> None:
    layer = tar({"usr/bin/bash": b"#!", "etc/shadow": b"root:x"})
    zst = zstandard.ZstdCompressor().compress(layer)
    for data, media_type in (
        (zst, "application/vnd.oci.image.layer.v1.tar+zstd"),
        (zst, ""),  # told by its magic
        (layer, "application/vnd.oci.image.layer.v1.tar"),
    ):
        listing = list_layer(chunks(data, 100), media_type=media_type, contents=CONTENTS)
        assert listing.matches == {"usr/bin/bash", "etc/shadow"}


def test_long_names_in_gnu_and_pax_form_are_read_whole() -> None:
    deep = "a/" * 80 + "bin/sh"  # over 100 bytes: needs a long-name record
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        layer = tar({deep: b"", "usr/local/bin/apk": b""}, fmt=fmt)
        listing = list_layer([layer], media_type="x", contents=CONTENTS)
        assert listing.matches == {"usr/local/bin/apk"}  # the deep sh is not in a bin dir
        assert listing.entries == 2
    long_bin = "usr/local/bin/" + "p" * 120
    layer = tar({long_bin: b""}, fmt=tarfile.GNU_FORMAT)
    listing = list_layer([layer], media_type="", contents=ForbiddenContents(("p*",), ()))
    assert listing.matches == {long_bin}


def test_whiteouts_remove_lower_layers_paths_and_opaque_dirs_empty_them() -> None:
    base = list_layer(
        [tar({"bin/sh": b"", "bin/bash": b"", "usr/bin/apt": b"", "etc/shadow": b""})],
        media_type="",
        contents=CONTENTS,
    )
    removes = list_layer(
        [tar({"bin/.wh.sh": b"", "usr/bin/.wh..wh..opq": b"", "etc/.wh.shadow": b""})],
        media_type="",
        contents=CONTENTS,
    )
    assert final_paths([base, removes]) == ("bin/bash",)
    # A path added again above its whiteout is present.
    again = LayerListing(matches=frozenset({"bin/sh"}))
    assert final_paths([base, removes, again]) == ("bin/bash", "bin/sh")
    # A whiteout of a whole directory removes everything under it.
    gone = LayerListing(removed=frozenset({"bin"}))
    assert final_paths([base, gone]) == ("etc/shadow", "usr/bin/apt")


def test_not_a_tar_and_broken_streams_are_refused_with_a_reason() -> None:
    with pytest.raises(LayerError, match="checksum"):
        list_layer([b"garbage" * 200], media_type="", contents=CONTENTS)
    broken = gzip.compress(tar({"bin/sh": b""}))[:-30] + b"\0" * 30
    with pytest.raises(LayerError):
        list_layer([broken[:20], b"\xff" * 50], media_type="+gzip", contents=CONTENTS)


def test_the_unpacked_bound_stops_a_decompression_bomb() -> None:
    bomb = gzip.compress(tar({"big": b"\0" * (4 << 20)}))
    assert len(bomb) < 64 << 10
    with pytest.raises(LayerError, match="unpacks to more than 1 MiB"):
        list_layer(chunks(bomb, 4096), media_type="", contents=CONTENTS, max_bytes=1 << 20)


def test_listing_cost_grows_linearly_with_the_entries() -> None:
    """Doubling the entries must not much more than double the parser's work (no rescans)."""
    import time

    def cost(n: int) -> float:
        layer = gzip.compress(tar({f"d/f{i}": b"x" * 10 for i in range(n)}))
        start = time.perf_counter()
        list_layer(chunks(layer, 1 << 16), media_type="", contents=CONTENTS)
        return time.perf_counter() - start

    cost(500)  # warm up
    small, large = min(cost(2000) for _ in range(3)), min(cost(8000) for _ in range(3))
    assert large < small * 4 * 3  # 4x the input: linear is 4x; generous factor
