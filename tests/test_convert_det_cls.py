"""``convert`` for detectors and classifiers, model facts from ``inference.yml``, and optional stages
that never end a conversion (issue 10 items 3 and 4)."""

from __future__ import annotations

import json
from pathlib import Path

import fixtures
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError, ToolError
from ncnnpass.passes.measure.model_info import InferenceYmlError, read_model_info
from ncnnpass.passes.toolchain import convert as convert_mod
from ncnnpass.passes.toolchain.convert import convert, second_shape
from ncnnpass.passes.toolchain.resize_roi import clear_unused_resize_roi

DET_YML = """\
Global:
  model_name: PP-OCRv5_mobile_det
PreProcess:
  transform_ops:
  - DecodeImage: {channel_first: false, img_mode: BGR}
  - DetResizeForTest: {resize_long: 960}
  - ToCHWImage: null
PostProcess:
  name: DBPostProcess
  thresh: 0.3
"""

REC_YML = """\
Global:
  model_name: my_rec
PreProcess:
  transform_ops:
  - RecResizeImg:
      image_shape: [3, 32, 256]
PostProcess:
  name: CTCLabelDecode
  character_dict: [a, b, c]
"""

CLS_YML = """\
Global: {model_name: some_textline_model}
PreProcess:
  transform_ops:
  - ClsResizeImg: {image_shape: [3, 48, 192]}
PostProcess: {name: ClsPostProcess, label_list: ['0', '180']}
"""


def _model_dir(tmp_path: Path, name: str, yml: str | None) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "inference.pdmodel").write_bytes(b"")
    if yml is not None:
        (d / "inference.yml").write_text(yml, encoding="utf-8")
    return d


# ------------------------------------------------------------------ read_model_info (unit)

def test_model_info_from_inference_yml(tmp_path: Path) -> None:
    det = read_model_info(_model_dir(tmp_path, "a", DET_YML))
    assert (det.kind, det.name, det.input_shape, det.dynamic, det.max_side) == \
        ("det", "PP-OCRv5_mobile_det", (3, 640, 640), (True, True), 960)
    rec = read_model_info(_model_dir(tmp_path, "b", REC_YML))
    assert (rec.kind, rec.input_shape, rec.dynamic, rec.dictionary) == ("rec", (3, 32, 256), (False, True), ["a", "b", "c"])
    cls = read_model_info(_model_dir(tmp_path, "c", CLS_YML))
    assert (cls.kind, cls.input_shape) == ("cls", (3, 48, 192))
    assert "inference.yml" in cls.sources


def test_model_info_guesses_from_the_name_without_yml(tmp_path: Path) -> None:
    assert read_model_info(_model_dir(tmp_path, "ch_PP-OCRv4_det_infer", None)).kind == "det"
    assert read_model_info(_model_dir(tmp_path, "ch_ppocr_mobile_v2.0_cls_infer", None)).input_shape == (3, 48, 192)
    unknown = read_model_info(_model_dir(tmp_path, "model", None))
    assert unknown.kind is None and unknown.input_shape == (3, 48, 320) and unknown.sources == ["family default"]


def test_model_info_from_onnx_output_rank(tmp_path: Path) -> None:
    def onnx_file(name: str, out_dims: list, in_dims: list) -> Path:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, in_dims)
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)
        g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
        path = tmp_path / f"{name}.onnx"
        onnx.save(helper.make_model(g), str(path))
        return path

    det = read_model_info(onnx_file("m1", ["N", 1, "H", "W"], ["N", 3, "H", "W"]))
    assert (det.kind, det.dynamic, det.input_shape) == ("det", (True, True), (3, 640, 640))
    rec = read_model_info(onnx_file("m2", ["N", "T", 97], ["N", 3, 32, "W"]))
    assert (rec.kind, rec.dynamic, rec.input_shape) == ("rec", (False, True), (3, 32, 320))
    cls = read_model_info(onnx_file("m3", ["N", 2], ["N", 3, 48, 192]))
    assert (cls.kind, cls.dynamic, cls.input_shape) == ("cls", (False, False), (3, 48, 192))


def test_bad_inference_yml_is_located(tmp_path: Path) -> None:
    d = _model_dir(tmp_path, "bad", "Global:\n  model_name: [unclosed\nPostProcess: {}\n")
    with pytest.raises(InferenceYmlError) as info:
        read_model_info(d)
    assert str(info.value).startswith(f"{d / 'inference.yml'}:") and info.value.line is not None


def test_second_shape_changes_every_dynamic_dim() -> None:
    assert second_shape((3, 640, 640), (True, True)) == (3, 480, 320)
    c, h2, w2 = second_shape((3, 736, 1280), (True, True))
    assert h2 != 736 and w2 != 1280 and h2 % 32 == 0 and w2 % 32 == 0
    assert second_shape((3, 48, 320), (False, True)) == (3, 48, 160)
    assert second_shape((3, 48, 192), (False, False)) is None


def test_clear_unused_resize_roi_keeps_results() -> None:
    import onnxruntime as ort

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 8])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2, 6, 8])
    inits = [numpy_helper.from_array(np.ones(8, np.float32), "roi"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
             numpy_helper.from_array(np.array([0, 0, 0.2, 0.1, 1, 1, 0.8, 0.9], np.float32), "crop")]
    nodes = [helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="nearest",
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
             helper.make_node("Resize", ["x", "crop", "scales"], ["z"], mode="linear",
                              coordinate_transformation_mode="tf_crop_and_resize")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y, z], inits),
                              opset_imports=[helper.make_opsetid("", 12)])
    feed = {"x": np.random.default_rng(0).uniform(-1, 1, (1, 2, 3, 4)).astype(np.float32)}
    before = ort.InferenceSession(model.SerializeToString()).run(None, feed)
    assert clear_unused_resize_roi(model) == 1
    assert model.graph.node[1].input[1] == "crop"  # the crop box is used: untouched
    onnx.checker.check_model(model, full_check=True)
    after = ort.InferenceSession(model.SerializeToString()).run(None, feed)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    assert clear_unused_resize_roi(model) == 0


def test_fatal_stage_errors_name_the_stage_and_what_to_try(tmp_path: Path) -> None:
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(NcnnpassError, match=r"stage 'source → ONNX' failed: .*what to try"):
        convert(str(empty), tmp_path / "o")


# ------------------------------------------------------------------ real models



@pytest.fixture(scope="module")
def ppocrv3_det_onnx() -> Path:
    return fixtures.require(fixtures.ppocrv3_det_onnx, "PP-OCRv3 det ONNX (rapidocr_onnxruntime==1.2.3)")


@pytest.mark.real
@pytest.mark.slow
def test_convert_v3_det_dynamic_size_with_report(ppocrv3_det_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "det"
    # 320×320 keeps the layer-by-layer report quick; the matrix converts at the 640×640 default
    result = convert(str(ppocrv3_det_onnx), out, shape=(3, 320, 320))
    a, b = result.figures["after"], result.figures["before"]
    assert result.kind == "det" and result.second_shape == (3, 224, 160)
    # H and W both dynamic: pnnx got inputshape2, the model is right at a second size of both dims
    assert (a.second_height, a.second_width) == (224, 160)
    assert a.max_abs_default <= 1.2 * b.max_abs_fp32 + 1e-6
    assert a.max_abs_default_second_width <= 1.2 * b.max_abs_fp32_second_width + 1e-6
    g = Graph.load(out / "model.ncnn.param")
    assert g.count_by_type("Interp") == 6 and not g.find("Resize"), "Resize roi not cleared for pnnx"
    report = json.loads((out / "convert.json").read_text())
    assert [s["status"] for s in report["stages"]] == ["done"] * 6, report["stages"]
    assert report["kind"] == "det" and report["shape"] == [3, 320, 320] and report["second_shape"] == [3, 224, 160]
    compare = json.loads((out / "compare.json").read_text())
    text = json.dumps(compare)
    assert "out0" in text and "sigmoid_0.tmp_0" in text  # the 1×H×W output mapped to the 1×1×H×W ONNX one
    assert "det 3×320×320" in result.table() and "224×160" in result.table()


@pytest.mark.real
@pytest.mark.slow
def test_onnxsim_failure_falls_back(ppocrv3_rec_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ncnnpass.passes.toolchain import onnxsim_step

    def broken(*args, **kwargs):
        raise ToolError("onnxsim failed on model.onnx: injected failure")

    monkeypatch.setattr(onnxsim_step, "simplify_onnx", broken)
    out = tmp_path / "o"
    result = convert(str(ppocrv3_rec_onnx), out, report=False)
    sim = result.stages[1]
    assert sim.name == "onnxsim" and sim.status == "failed" and "injected failure" in sim.reason
    assert "pnnx gets the unsimplified ONNX" in sim.note
    assert any("onnxsim failed" in w for w in result.warnings)
    assert result.figures["after"].max_abs_fp32 <= 1e-5 and not (out / "model.sim.onnx").exists()
    assert json.loads((out / "convert.json").read_text())["stages"][1]["status"] == "failed"


@pytest.mark.real
@pytest.mark.slow
def test_compare_report_failure_keeps_the_model(ppocrv3_rec_onnx: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from ncnnpass.cli.main import main

    def broken(*args, **kwargs):
        raise RuntimeError("the report could not map the outputs (injected)")

    monkeypatch.setattr(convert_mod, "_write_report", broken)
    out = tmp_path / "o"
    assert main(["convert", str(ppocrv3_rec_onnx), "-o", str(out), "--no-task"]) == 0
    err = capsys.readouterr().err
    assert "ncnnpass convert: warning: the compare report failed (RuntimeError: the report could not map" in err
    assert (out / "model.ncnn.param").is_file() and (out / "model.ncnn.bin").is_file()
    stage = json.loads((out / "convert.json").read_text())["stages"][-1]
    assert (stage["name"], stage["status"]) == ("compare report", "failed") and "injected" in stage["reason"]


@pytest.mark.real
@pytest.mark.slow
def test_verification_failure_is_fatal_and_says_what_to_try(ppocrv3_rec_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(NcnnpassError, match=r"stage 'verify against onnxruntime' failed: .*what to try"):
        convert(str(ppocrv3_rec_onnx), tmp_path / "o", tolerance=1e-12, report=False)
    assert not (tmp_path / "o" / "convert.json").exists()
