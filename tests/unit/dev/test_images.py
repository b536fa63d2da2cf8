"""The OCI image builder: deterministic layers, valid manifests, reproducible images, and a
registry push that a real distribution registry accepts (htpasswd and TLS included)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from modelward_dev.images import (
    LAYER_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    ImageConfig,
    Layer,
    build_image,
    busybox_image,
    modelward_image,
    parse_reference,
    write_oci_layout,
)
from modelward_dev.registry import Credentials, LocalRegistry, RegistryError


def _members(blob: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def test_a_layer_is_the_same_bytes_whatever_the_order_and_times_of_its_files(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_bytes(b"alpha")
    second.write_bytes(b"beta")
    one, two = Layer(), Layer()
    one.add_host_file("/x/a", first)
    one.add_host_file("/y/b", second)
    second.touch()  # a new mtime must not change the layer
    two.add_host_file("/y/b", second)
    two.add_host_file("/x/a", first)
    assert one.tar_gz() == two.tar_gz()
    members = _members(one.tar_gz()[0])
    assert sorted(members) == ["x", "x/a", "y", "y/b"]  # parents implied, sorted
    assert {(m.mtime, m.uid, m.gid, m.uname) for m in members.values()} == {(0, 0, 0, "")}


def test_the_diff_id_is_the_digest_of_the_uncompressed_tar() -> None:
    layer = Layer()
    layer.add_file("/hello", b"hi")
    data, diff_id = layer.tar_gz()
    assert diff_id == "sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest()


def test_nothing_may_be_stored_beneath_a_symlink() -> None:
    layer = Layer()
    layer.add_symlink("/lib", "usr/lib")
    layer.add_file("/lib/libc.so", b"")
    with pytest.raises(ValueError, match="beneath lib"):
        layer.tar_gz()


def test_host_libraries_under_merged_usr_links_are_stored_under_usr(tmp_path: Path) -> None:
    (tmp_path / "libz.so.1.2").write_bytes(b"elf")
    (tmp_path / "libz.so.1").symlink_to("libz.so.1.2")
    layer = Layer()
    layer.add_symlink("/lib", "usr/lib")
    layer.add_host_path("/lib/x86_64-linux-gnu/libz.so.1", tmp_path / "libz.so.1")
    members = _members(layer.tar_gz()[0])
    assert members["usr/lib/x86_64-linux-gnu/libz.so.1"].linkname == "libz.so.1.2"
    assert members["usr/lib/x86_64-linux-gnu/libz.so.1.2"].isfile()


def test_the_manifest_names_every_layer_and_the_config_by_digest() -> None:
    layer = Layer()
    layer.add_file("/a", b"a")
    image = build_image("t", [layer], ImageConfig(entrypoint=("/a",), user="65532:65532"))
    manifest = json.loads(image.manifest)
    assert manifest["mediaType"] == MANIFEST_MEDIA_TYPE
    for descriptor in [manifest["config"], *manifest["layers"]]:
        blob = image.blobs[descriptor["digest"]]
        assert len(blob) == descriptor["size"]
        assert descriptor["digest"] == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert manifest["layers"][0]["mediaType"] == LAYER_MEDIA_TYPE
    config = json.loads(image.config)
    assert config["config"]["User"] == "65532:65532" and config["created"] == "1970-01-01T00:00:00Z"


def test_source_date_epoch_sets_every_timestamp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    layer = Layer()
    layer.add_file("/a", b"a")
    image = build_image("t", [layer], ImageConfig())
    assert json.loads(image.config)["created"] == "2023-11-14T22:13:20Z"
    data = next(b for b in image.blobs.values() if b[:2] == b"\x1f\x8b")
    assert _members(data)["a"].mtime == 1700000000


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("127.0.0.1:5000/modelward:dev", ("127.0.0.1:5000", "modelward", "dev")),
        (
            "registry.example.com/team/modelward",
            ("registry.example.com", "team/modelward", "latest"),
        ),
        ("localhost/m:1.0", ("localhost", "m", "1.0")),
    ],
)
def test_image_references_name_a_registry(reference: str, expected: tuple[str, str, str]) -> None:
    assert parse_reference(reference) == expected


@pytest.mark.parametrize("reference", ["modelward:dev", "modelward", "HOST/UPPER:tag", ""])
def test_a_reference_without_a_registry_is_refused_with_the_expected_form(reference: str) -> None:
    with pytest.raises(ValueError, match=r"HOST\[:PORT\]/REPOSITORY\[:TAG\]"):
        parse_reference(reference)


def test_busybox_image_is_reproducible_and_runs_sh() -> None:
    first, second = busybox_image(), busybox_image()
    assert first.digest == second.digest
    config = json.loads(first.config)["config"]
    assert config["Cmd"] == ["sh"]
    layer = next(b for b in first.blobs.values() if b[:2] == b"\x1f\x8b")
    members = _members(layer)
    assert members["bin/sh"].issym() and members["bin/busybox"].isfile()


@pytest.mark.slow
def test_modelward_image_is_reproducible_and_matches_the_dockerfile(tmp_path: Path) -> None:
    first, second = modelward_image(), modelward_image()
    assert first.digest == second.digest
    config = json.loads(first.config)["config"]
    assert config["Entrypoint"] == ["python", "-m", "modelward"] and config["Cmd"] == ["run"]
    assert config["User"] == "65532:65532"
    assert "PYTHONDONTWRITEBYTECODE=1" in config["Env"]
    assert set(config["ExposedPorts"]) == {"8443/tcp", "8080/tcp"}
    names: set[str] = set()
    for blob in first.blobs.values():
        if blob[:2] == b"\x1f\x8b":
            names |= set(_members(blob))
    assert "usr/bin/python3.11" in names
    assert "venv/lib/python3.11/site-packages/modelward/cli.py" in names
    assert "venv/lib/python3.11/site-packages/kopf/__init__.py" in names
    assert not any("site-packages/pytest" in n or "site-packages/mypy/" in n for n in names)
    assert not any(n.startswith("usr/lib/python3.11/test/") for n in names)
    write_oci_layout(first, tmp_path / "layout", ref_name="dev")
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == first.digest
    stored = tmp_path / "layout" / "blobs" / "sha256" / first.digest.split(":")[1]
    assert stored.read_bytes() == first.manifest


def test_a_pushed_image_is_served_back_by_the_registry() -> None:
    image = busybox_image()
    with LocalRegistry() as registry:
        client = registry.client()
        digest = image.push(client, "tools/busybox", "1")
        status, body = client.manifest("tools/busybox", "1", MANIFEST_MEDIA_TYPE)
        assert status == 200 and body == image.manifest and digest == image.digest
        status, body = client.manifest("tools/busybox", digest, MANIFEST_MEDIA_TYPE)
        assert status == 200


def test_a_registry_with_htpasswd_and_tls_refuses_anonymous_pushes() -> None:
    user = Credentials("pusher", "s3cret-pass")
    image = busybox_image()
    with LocalRegistry(tls=True, users=(user,)) as registry:
        assert registry.url.startswith("https://127.0.0.1:")
        with pytest.raises(RegistryError, match=r"HTTP 401.*wants credentials"):
            image.push(registry.client(), "busybox", "1")
        with pytest.raises(RegistryError, match="HTTP 401"):
            image.push(registry.client(Credentials("pusher", "wrong")), "busybox", "1")
        assert image.push(registry.client(user), "busybox", "1") == image.digest
