"""The ONNX scanner against models built by the real ``onnx`` package (test-only extra);
our wire-format reader must agree with it on real files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx  # a test dependency (pip install -e .[test]), never needed at run time
from onnx import helper, numpy_helper

from modelward.integrity.scanning import scan_paths


def _model(
    *,
    nodes: list[Any],
    initializers: list[Any],
    opsets: list[Any] | None = None,
    functions: list[Any] | None = None,
) -> Any:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, [2, 2])],
        initializer=initializers,
    )
    return helper.make_model(
        graph, opset_imports=opsets or [helper.make_opsetid("", 17)], functions=functions or []
    )


def _save(model: Any, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def test_real_model_is_clean(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((2, 2), dtype=np.float32), "W")
    model = _model(
        nodes=[
            helper.make_node("MatMul", ["X", "W"], ["H"]),
            helper.make_node("Relu", ["H"], ["Y"]),
        ],
        initializers=[w],
    )
    onnx.checker.check_model(model)
    assert scan_paths([str(_save(model, tmp_path / "m.onnx"))]).verdict == "clean"


def test_real_external_data_inside_is_clean(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((64, 64), dtype=np.float32), "W")
    model = _model(nodes=[helper.make_node("MatMul", ["X", "W"], ["Y"])], initializers=[w])
    onnx.save(
        model,
        str(tmp_path / "m.onnx"),
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (tmp_path / "weights.bin").exists()
    assert scan_paths([str(tmp_path / "m.onnx")]).verdict == "clean"


def test_real_external_data_escaping(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((2, 2), dtype=np.float32), "W")
    w.data_location = onnx.TensorProto.EXTERNAL
    w.ClearField("raw_data")
    entry = w.external_data.add()
    entry.key, entry.value = "location", "../../../../etc/passwd"
    model = _model(nodes=[helper.make_node("MatMul", ["X", "W"], ["Y"])], initializers=[w])
    report = scan_paths([str(_save(model, tmp_path / "m.onnx"))])
    assert {f.rule for f in report.findings} == {"onnx-external-data"}


def test_real_symlink_escape(tmp_path: Path) -> None:
    w = numpy_helper.from_array(np.ones((2, 2), dtype=np.float32), "W")
    w.data_location = onnx.TensorProto.EXTERNAL
    w.ClearField("raw_data")
    entry = w.external_data.add()
    entry.key, entry.value = "location", "weights.bin"
    (tmp_path / "weights.bin").symlink_to("/etc/hostname")
    model = _model(nodes=[helper.make_node("MatMul", ["X", "W"], ["Y"])], initializers=[w])
    report = scan_paths([str(_save(model, tmp_path / "m.onnx"))])
    assert "onnx-external-data" in {f.rule for f in report.findings}


def test_real_custom_domain_and_local_function(tmp_path: Path) -> None:
    custom = _model(
        nodes=[helper.make_node("Exec", ["X"], ["Y"], domain="evil.ops")],
        initializers=[],
        opsets=[helper.make_opsetid("", 17), helper.make_opsetid("evil.ops", 1)],
    )
    report = scan_paths([str(_save(custom, tmp_path / "c.onnx"))])
    assert {f.rule for f in report.findings} == {"onnx-custom-domain"}
    fn = helper.make_function(
        "local.fns",
        "MyRelu",
        ["x"],
        ["y"],
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_opsetid("", 17)],
    )
    local = _model(
        nodes=[helper.make_node("MyRelu", ["X"], ["Y"], domain="local.fns")],
        initializers=[],
        opsets=[helper.make_opsetid("", 17), helper.make_opsetid("local.fns", 1)],
        functions=[fn],
    )
    report = scan_paths([str(_save(local, tmp_path / "l.onnx"))])
    assert report.verdict == "clean"  # a model-local function is not a custom native op


def test_real_subgraph_custom_op(tmp_path: Path) -> None:
    body = helper.make_graph(
        [helper.make_node("Exec", ["x"], ["y"], domain="evil.ops")],
        "then",
        [],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 2])],
    )
    cond = numpy_helper.from_array(np.array(True), "C")
    node = helper.make_node("If", ["C"], ["Y"], then_branch=body, else_branch=body)
    model = _model(nodes=[node], initializers=[cond])
    report = scan_paths([str(_save(model, tmp_path / "s.onnx"))])
    assert "onnx-custom-domain" in {f.rule for f in report.findings}
