"""Real-model fixtures and the external-tool wrappers (pnnx, onnxsim, paddle2onnx)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from ncnnpass.ir.errors import ToolError
from ncnnpass.passes.toolchain import pnnx as pnnx_mod
from ncnnpass.passes.toolchain.onnxsim_step import simplify_onnx
from ncnnpass.passes.toolchain.paddle2onnx import (
    find_rank_mismatched_concats,
    repair_concat_ranks,
    validate_onnx,
    verify_conversion,
)

VOCAB = 6625  # 6623 dictionary characters + blank + space
ATOL_FP32 = 1e-4  # measured: ~5e-6 for PP-OCRv3 with fp16 storage/arithmetic off


def _ort(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _ncnn_run(param: Path, bin_: Path, x: np.ndarray) -> np.ndarray:
    import ncnn

    net = ncnn.Net()
    net.opt.use_fp16_storage = False
    net.opt.use_fp16_packed = False
    net.opt.use_fp16_arithmetic = False
    net.opt.num_threads = 2
    assert net.load_param(str(param)) == 0
    assert net.load_model(str(bin_)) == 0
    ex = net.create_extractor()
    assert ex.input("in0", ncnn.Mat(np.ascontiguousarray(x[0]))) == 0
    ret, out = ex.extract("out0")
    assert ret == 0
    return np.array(out)


def _random_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


@pytest.mark.real
@pytest.mark.parametrize("batch,width", [(1, 320), (2, 160)])
def test_ppocrv3_onnx_loads(ppocrv3_rec_onnx: Path, batch: int, width: int) -> None:
    sess = _ort(ppocrv3_rec_onnx)
    (inp,) = sess.get_inputs()
    assert inp.name == "x"
    assert len(inp.shape) == 4 and inp.shape[1] == 3  # N, H and W are dynamic in this model
    y = sess.run(None, {"x": _random_input((batch, 3, 48, width))})[0]
    assert y.shape == (batch, width // 8, VOCAB)
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-4)
    assert "character" in {p.key for p in onnx.load(str(ppocrv3_rec_onnx), load_external_data=False).metadata_props}


@pytest.mark.real
def test_ppocr_keys(ppocr_keys_v1: Path) -> None:
    lines = ppocr_keys_v1.read_text(encoding="utf-8").splitlines()
    assert len(lines) == VOCAB - 2


@pytest.mark.real
@pytest.mark.slow
def test_pnnx_ppocrv3_matches_onnxruntime(ppocrv3_rec_onnx: Path, ppocrv3_rec_ncnn: tuple[Path, Path]) -> None:
    param, bin_ = ppocrv3_rec_ncnn
    fp16 = "fp16-1" in param.parent.name
    assert "Input" in param.read_text() and "in0" in param.read_text()
    x = _random_input((1, 3, 48, 320), seed=1)
    ref = _ort(ppocrv3_rec_onnx).run(None, {"x": x})[0][0]
    got = _ncnn_run(param, bin_, x)
    assert got.shape == ref.shape == (40, VOCAB)
    err = float(np.max(np.abs(got - ref)))
    print(f"PP-OCRv3 pnnx fp16={int(fp16)}: max |ncnn - onnxruntime| = {err:.3g}")
    # fp16=1 stores weights as fp16: measured ~1e-3 on these probabilities.
    assert err < (1e-2 if fp16 else ATOL_FP32)


@pytest.mark.real
def test_ppocrv4_paddle_converts(ppocrv4_rec_paddle_dir: Path, ppocrv4_rec_onnx: Path) -> None:
    assert (ppocrv4_rec_paddle_dir / "inference.pdmodel").is_file()
    assert validate_onnx(ppocrv4_rec_onnx) == []
    assert find_rank_mismatched_concats(ppocrv4_rec_onnx) == []
    y = _ort(ppocrv4_rec_onnx).run(None, {"x": _random_input((2, 3, 48, 320))})[0]
    assert y.shape == (2, 40, VOCAB)
    result = verify_conversion(ppocrv4_rec_paddle_dir, ppocrv4_rec_onnx)
    assert result["max_abs_err"] is not None and result["max_abs_err"] < 1e-4


@pytest.mark.real
@pytest.mark.slow
def test_pnnx_ppocrv4_runs(ppocrv4_rec_onnx: Path, ppocrv4_rec_ncnn: tuple[Path, Path]) -> None:
    param, bin_ = ppocrv4_rec_ncnn
    fp16 = "fp16-1" in param.parent.name
    x = _random_input((1, 3, 48, 320), seed=2)
    ref = _ort(ppocrv4_rec_onnx).run(None, {"x": x})[0][0]
    got = _ncnn_run(param, bin_, x)
    assert got.shape == ref.shape == (40, VOCAB)
    err = float(np.max(np.abs(got - ref)))
    print(f"PP-OCRv4 pnnx fp16={int(fp16)}: max |ncnn - onnxruntime| = {err:.3g}")
    assert err < (1e-2 if fp16 else ATOL_FP32)


# ------------------------------------------------------------------ bad-ONNX detection and repair

def _bad_concat_model(opset: int) -> onnx.ModelProto:
    """Like paddle2onnx 2.1.0's PP-OCRv4 reshape targets: Concat([3], Squeeze(Slice(Shape(x))), [-1])."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, "N", 2])
    inits = [
        helper.make_tensor("three", TensorProto.INT64, [1], [3]),
        helper.make_tensor("minus_one", TensorProto.INT64, [1], [-1]),
    ]
    nodes = [helper.make_node("Shape", ["x"], ["shape"])]
    if opset >= 13:
        inits += [helper.make_tensor("s0", TensorProto.INT64, [1], [0]),
                  helper.make_tensor("s1", TensorProto.INT64, [1], [1]),
                  helper.make_tensor("ax", TensorProto.INT64, [1], [0])]
        nodes += [helper.make_node("Slice", ["shape", "s0", "s1", "ax"], ["n1"]),
                  helper.make_node("Squeeze", ["n1", "ax"], ["n0"])]
    else:
        nodes += [helper.make_node("Slice", ["shape"], ["n1"], starts=[0], ends=[1], axes=[0]),
                  helper.make_node("Squeeze", ["n1"], ["n0"], axes=[0])]
    nodes += [
        helper.make_node("Concat", ["three", "n0", "minus_one"], ["target"], axis=0, name="Concat.2"),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "bad", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


@pytest.mark.parametrize("opset", [9, 14])
def test_rank_mismatched_concat_detected_and_repaired(opset: int) -> None:
    model = _bad_concat_model(opset)
    problems = validate_onnx(model)
    assert any("All inputs to Concat must have same rank" in p for p in problems)
    assert find_rank_mismatched_concats(model) == ["Concat.2"]
    assert repair_concat_ranks(model) == 1
    assert validate_onnx(model) == []
    assert find_rank_mismatched_concats(model) == []
    x = _random_input((4, 6))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"x": x})[0]
    np.testing.assert_array_equal(y, x.reshape(3, 4, 2))


def test_repair_leaves_valid_model_alone() -> None:
    model = _bad_concat_model(14)
    repair_concat_ranks(model)
    before = model.SerializeToString()
    assert repair_concat_ranks(model) == 0
    assert model.SerializeToString() == before


# ------------------------------------------------------------------ tool discovery and errors

def _hide_pnnx(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PNNX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(pnnx_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pnnx" else real_find_spec(name, *a))


def test_pnnx_missing_raises_toolerror(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _hide_pnnx(monkeypatch, tmp_path)
    with pytest.raises(ToolError, match=r"pip install --no-deps pnnx"):
        pnnx_mod.find_pnnx()
    monkeypatch.setenv("PNNX", str(tmp_path / "no-such-pnnx"))
    with pytest.raises(ToolError, match=r"pip install --no-deps pnnx"):
        pnnx_mod.find_pnnx()
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"")
    with pytest.raises(ToolError):
        pnnx_mod.run_pnnx(onnx_file, tmp_path / "out")


def test_pnnx_skips_python_console_script(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _hide_pnnx(monkeypatch, tmp_path)
    script = tmp_path / "pnnx"
    script.write_text("#!/usr/bin/python3\nfrom pnnx import pnnx\n")
    script.chmod(0o755)
    with pytest.raises(ToolError):
        pnnx_mod.find_pnnx()


@pytest.mark.real
def test_find_pnnx_real() -> None:
    import fixtures

    exe = fixtures.require(lambda: pnnx_mod.find_pnnx(), "pnnx binary (pip install --no-deps pnnx)")
    assert Path(exe).is_file()


@pytest.mark.real
def test_pnnx_failure_reports_output(tmp_path: Path) -> None:
    import fixtures

    fixtures.require(lambda: pnnx_mod.find_pnnx(), "pnnx binary (pip install --no-deps pnnx)")
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not an onnx file")
    with pytest.raises(ToolError, match="pnnx"):
        pnnx_mod.run_pnnx(bad, tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.ncnn.*"))


def test_simplify_onnx(tmp_path: Path) -> None:
    model = _bad_concat_model(14)
    repair_concat_ranks(model)
    src = tmp_path / "in.onnx"
    onnx.save(model, str(src))
    out = simplify_onnx(src, tmp_path / "out.onnx", input_shape=(4, 6))
    simplified = onnx.load(str(out))
    assert [n.op_type for n in simplified.graph.node] == ["Reshape"]
    x = _random_input((4, 6))
    y = _ort(out).run(None, {"x": x})[0]
    np.testing.assert_array_equal(y, x.reshape(3, 4, 2))


# ------------------------------------------------------------------ paddle2onnx routes

def test_paddle_to_onnx_without_converter_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ncnnpass.passes.toolchain import paddle2onnx as p2o

    model_dir = tmp_path / "m"
    model_dir.mkdir()
    with pytest.raises(ToolError, match="inference.pdiparams"):
        p2o.paddle_to_onnx(model_dir, tmp_path / "out.onnx")
    (model_dir / "inference.pdmodel").write_bytes(b"")
    (model_dir / "inference.pdiparams").write_bytes(b"")
    monkeypatch.setattr(p2o, "_installed_version", lambda dist: None)
    monkeypatch.setattr(p2o, "_has_module", lambda name: False)
    with pytest.raises(ToolError, match=r"pip install --no-deps paddle2onnx==1\.3\.1"):
        p2o.paddle_to_onnx(model_dir, tmp_path / "out.onnx", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.real
@pytest.mark.slow
def test_paddle_to_onnx_side_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                 ppocrv4_rec_paddle_dir: Path, ppocrv4_rec_onnx: Path) -> None:
    """The fallback route: a paddle2onnx 1.3.1 venv made on request gives the same ONNX."""
    import fixtures

    from ncnnpass.passes.toolchain import paddle2onnx as p2o

    monkeypatch.setattr(p2o, "_installed_version", lambda dist: None)  # as if paddle2onnx were absent
    cache = fixtures.cache_dir()
    fixtures.require(lambda: p2o.ensure_legacy_env(cache), "paddle2onnx 1.3.1 side venv (pip install)")
    out = p2o.paddle_to_onnx(ppocrv4_rec_paddle_dir, tmp_path / "v4.onnx", cache_dir=cache)
    assert validate_onnx(out) == []
    x = _random_input((1, 3, 48, 320), seed=3)
    np.testing.assert_allclose(_ort(out).run(None, {"x": x})[0], _ort(ppocrv4_rec_onnx).run(None, {"x": x})[0],
                               atol=1e-6)
