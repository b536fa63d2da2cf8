"""Property-based tests of the `scan` and `verify` contracts on mutated input (hypothesis).

`scan`: whatever the bytes, the exit code is 0, 1 or 2, nothing escapes as a traceback or as a
scanner bug ("could not scan"), and the work done stays within the file's expansion budget
(which is what bounds the time: no wall clock is measured).
`verify`: a signature bundle whose signed content was changed never verifies (exit 0), and a
broken one is a one-line error, never a traceback.

The CLI's ``main()`` runs in-process with captured output; budgets are fixed and
derandomized, so the runs are reproducible and take seconds.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import io
import json
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from modelward.integrity.commands import main
from modelward.integrity.scanning import ScanPolicy

from .conftest import make_key, make_model, requires_model_signing, sign_key_cli
from .scanning import corpus as c

BUDGET = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _samples() -> dict[str, bytes]:
    sd, stores = c.torch_pickle(c.state_dict(2))
    plain = pickle.dumps({"a": [1, 2, 3], "b": "x" * 50}, protocol=4)
    return {
        "pickle": plain,
        "pickle-p0": pickle.dumps({"a": [1, 2, 3]}, protocol=0),
        "payload": c.proto(4, c.call("os", "system", "id")),
        "torch-zip": c.torch_zip(sd, stores),
        "torch-legacy": c.torch_legacy(c.state_dict(1)),
        "npy": c.npy("<f4", (4,), b"\x00" * 16),
        "joblib": c.joblib_pickle(),
        "gzip": c.gzip_bytes(plain),
        "tar": c.tar_bytes({"a/data.pkl": plain}),
        "nested-zip": c.zip_bytes({"inner.zip": c.zip_bytes({"data.pkl": plain})}),
    }


SAMPLES = _samples()

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 20), st.integers(1, 16)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20), st.just(0)),
    st.tuples(st.just("repeat"), st.integers(0, 1 << 20), st.integers(1, 64)),
)


def mutate_bytes(data: bytes, edits: list[tuple[str, int, Any]]) -> bytes:
    buf = bytearray(data)
    for kind, position, arg in edits:
        at = position % (len(buf) + 1)
        if kind == "flip" and at < len(buf):
            buf[at] ^= arg
        elif kind == "insert":
            buf[at:at] = arg
        elif kind == "delete":
            del buf[at : at + arg]
        elif kind == "truncate":
            del buf[at:]
        elif kind == "repeat":
            buf[at:at] = buf[at : at + arg] * 3
    return bytes(buf)


@BUDGET
@given(name=st.sampled_from(sorted(SAMPLES)), edits=st.lists(mutation, min_size=1, max_size=4))
def test_scan_of_mutated_models_keeps_its_contract(
    name: str, edits: list[tuple[str, int, Any]]
) -> None:
    data = mutate_bytes(SAMPLES[name], edits)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "model.bin")
        path.write_bytes(data)
        code, out, err = run(["scan", str(path), "--output", "json"])
    event(f"exit {code}")
    assert code in (0, 1, 2) and "Traceback" not in out + err, err
    report = json.loads(out)
    assert not report["errors"], report["errors"]  # only I/O can stop a scan; this is a bug
    assert code == {"clean": 0, "unsafe": 1}[report["result"]]
    (scanned,) = report["files"]
    assert scanned["expanded"] <= 2 * ScanPolicy().expansion_budget(len(data))


# --------------------------------------------------------------------------- verify


@pytest.fixture(scope="module")
def signed_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    """A model signed once by the real model_signing tool: (model, public key, bundle)."""
    root = tmp_path_factory.mktemp("signed")
    model = make_model(root)
    key = make_key(root, "signer")
    signature = root / "model.sig"
    sign_key_cli(model, key, signature)
    return model, key.public, signature.read_bytes()


def signed_content(bundle: bytes) -> tuple[Any, ...] | None:
    """What the signature covers (payload type, payload, signature bytes), as the verifier
    decodes it; ``None`` when the bundle does not have it in readable form."""
    try:
        envelope = json.loads(bundle)["dsseEnvelope"]
        (signature,) = envelope["signatures"]
        return (
            envelope["payloadType"],
            base64.b64decode(envelope["payload"], validate=True),
            base64.b64decode(signature["sig"], validate=True),
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


def _verify(model: Path, public: Path, bundle: bytes) -> tuple[int, str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        signature = Path(tmp, "model.sig")
        signature.write_bytes(bundle)
        return run(
            ["verify", str(model), "--signature", str(signature), "--public-key", str(public)]
        )


def _assert_verify_contract(original: bytes, mutated: bytes, result: tuple[int, str, str]) -> None:
    code, out, err = result
    event(f"exit {code}")
    assert code in (0, 1, 2) and "Traceback" not in out + err, err
    assert err.count("\n") <= 1, err
    if code == 0:
        assert signed_content(mutated) == signed_content(original), "changed content verified"


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=6), inner, max_size=2)
    ),
    max_leaves=4,
)


def _mutate_json(draw: Callable[[Any], Any], doc: Any) -> Any:
    doc = copy.deepcopy(doc)
    parent: Any = None
    key: Any = None
    node = doc
    while isinstance(node, dict | list) and node and draw(st.integers(0, 9)) < 8:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        parent, key = node, draw(st.sampled_from(keys))
        node = node[key]
    if parent is None:
        return draw(values)
    action = draw(st.sampled_from(["replace", "delete", "edit-string"]))
    if action == "delete":
        del parent[key]
    elif action == "edit-string" and isinstance(node, str) and node:
        at = draw(st.integers(0, len(node) - 1))
        parent[key] = node[:at] + draw(st.sampled_from("A/+=0z-_ ")) + node[at + 1 :]
    else:
        parent[key] = draw(values)
    return doc


@requires_model_signing
@BUDGET
@given(data=st.data())
def test_verify_of_mutated_bundles_keeps_its_contract(
    signed_model: tuple[Path, Path, bytes], data: st.DataObject
) -> None:
    model, public, original = signed_model
    mutated = json.dumps(_mutate_json(data.draw, json.loads(original))).encode()
    _assert_verify_contract(original, mutated, _verify(model, public, mutated))


@requires_model_signing
@BUDGET
@given(edits=st.lists(mutation, min_size=1, max_size=3))
def test_verify_of_byte_mutated_bundles_keeps_its_contract(
    signed_model: tuple[Path, Path, bytes], edits: list[tuple[str, int, Any]]
) -> None:
    model, public, original = signed_model
    mutated = mutate_bytes(original, edits)
    _assert_verify_contract(original, mutated, _verify(model, public, mutated))


def test_the_unchanged_bundle_verifies(signed_model: tuple[Path, Path, bytes]) -> None:
    """The oracle's baseline: without a mutation, exit 0 (else the properties prove nothing)."""
    model, public, original = signed_model
    assert _verify(model, public, original)[0] == 0
    assert signed_content(original) is not None
