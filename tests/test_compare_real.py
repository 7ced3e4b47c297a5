"""``ncnnpass compare`` on the real PP-OCRv3 recognition model (ONNX from RapidOCR, ncnn from pnnx fp16=0).

What issue 4 checks: >= 90% of ncnn blobs mapped; under default options the SE blocks' InnerProduct
layers are the first divergence, attributed to fp16 storage; ``--fix`` brings the final error to <= 1e-5;
name mapping on an onnx2ncnn-style model; clear errors for mismatched models and shapes.
"""

from __future__ import annotations

from pathlib import Path

import fixtures
import numpy as np
import pytest

from ncnnpass.ir import Graph
from ncnnpass.passes.compare import ModelMismatchError, compare_models
from ncnnpass.passes.compare.render import render_text

pytestmark = [pytest.mark.real, pytest.mark.slow]


@pytest.fixture(scope="module")
def v3() -> dict[str, Path]:
    onnx = fixtures.require(fixtures.ppocrv3_rec_onnx, "PP-OCRv3 rec ONNX (rapidocr_onnxruntime==1.2.3)")
    param, bin = fixtures.require(lambda: fixtures.ppocrv3_rec_ncnn(False), "pnnx conversion of PP-OCRv3 rec (fp16=0)")
    return {"onnx": onnx, "param": param, "bin": bin}


@pytest.fixture(scope="module")
def v3_report(v3):
    return compare_models(v3["onnx"], v3["param"], v3["bin"], fix=True)


def test_v3_mapping_coverage(v3_report) -> None:
    mp = v3_report.mapping
    assert mp.coverage >= 0.9, [(m.blob, m.reason) for m in mp.unmapped]
    assert not [m for m in mp.mapped if m.ambiguous]
    by_blob = {m.blob: m.tensor for m in mp.mapped}
    assert by_blob["out0"] == "softmax_5.tmp_0"
    assert by_blob["in0"] == "x"


def test_v3_first_divergence_is_se_innerproduct_under_fp16_storage(v3_report) -> None:
    d = v3_report.default
    first = d.first_divergence
    assert first is not None and first.layer_type == "InnerProduct"
    g = Graph.load(*(v3_report.param, v3_report.bin))
    pool = g.blobs[g.layer(first.layer).inputs[0]].producer
    assert pool.type == "Pooling" and int(pool.get(4, 0)) == 1  # the SE block's global pooling
    att = v3_report.attribution
    assert att.cause == "fp32" and att.fields == ["use_fp16_storage"]
    ips = [ly.name for ly in g.find("InnerProduct")]
    assert len(ips) == 4 and [c.layer for c in att.carriers] == ips
    assert all(c.after_global_pooling for c in att.carriers)
    # no other layer diverges on its own (Softmax's fast exp sits at ~6e-6 of its range, under the 1e-5 threshold)
    assert [r.layer for r in d.divergent if r.layer_type != "Softmax"] == ips
    assert v3_report.runs["fp32"].final_max_abs < 2e-5 < d.final_max_abs
    assert any("use_fp16_storage" in s for s in att.summary)
    assert v3_report.advice[0].action == "gap-fc-to-conv"
    (rec,) = d.rec
    assert rec.timesteps == 40 and rec.classes == 6625 and rec.text_equal is not None


def test_v3_fix_reaches_1e5(v3_report) -> None:
    fixed = v3_report.fixed
    assert fixed is not None
    assert fixed.default.final_max_abs <= 1e-5
    assert not fixed.default.divergent
    assert "InnerProduct" not in {ly.type for ly in fixed.graph.layers}
    text = render_text(v3_report)
    assert "after --fix" in text and "<< first divergence" in text


def test_v3_onnx2ncnn_naming_maps_by_name(v3, v3_report, tmp_path: Path) -> None:
    """Rename the pnnx blobs to the ONNX tensor names they map to (Split tops become <name>_splitncnn_k)."""
    g = Graph.load(v3["param"], v3["bin"])
    for m in v3_report.mapping.mapped:
        if m.tensor != m.blob and m.tensor not in g.blobs:
            g.rename_blob(m.blob, m.tensor)
    g.splits.clear()  # regenerate Split layers with onnx2ncnn's <blob>_splitncnn_<k> names
    g.save(tmp_path / "o2n.param", tmp_path / "o2n.bin")
    assert "_splitncnn_0" in (tmp_path / "o2n.param").read_text()
    r = compare_models(v3["onnx"], tmp_path / "o2n.param", tmp_path / "o2n.bin", options=["default", "fp32"])
    named = [m for m in r.mapping.mapped if m.how.startswith("name")]
    assert len(named) / len(r.mapping.blobs) >= 0.9
    assert r.default.first_divergence.layer_type == "InnerProduct"
    assert r.attribution.fields == ["use_fp16_storage"]


def test_v3_mismatched_model_and_shape(v3) -> None:
    v4 = fixtures.require(lambda: fixtures.ppocrv4_rec_ncnn(False), "pnnx conversion of PP-OCRv4 rec (fp16=0)")
    with pytest.raises(ModelMismatchError, match="does not look like a conversion") as exc:
        compare_models(v3["onnx"], v4[0], v4[1], options=["default"])
    assert "\n" not in str(exc.value)
    with pytest.raises(ModelMismatchError, match="another input shape") as exc:
        compare_models(v3["onnx"], v3["param"], v3["bin"], shape=(3, 48, 640), options=["default"])
    assert "reshape" in str(exc.value) and "\n" not in str(exc.value)


def test_v3_image_input_reports_padding(v3, tmp_path: Path) -> None:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (120, 32), (245, 245, 245))
    ImageDraw.Draw(img).text((6, 4), "AB12", fill=(20, 20, 20), font=ImageFont.load_default(22))
    img.save(tmp_path / "short.png")
    r = compare_models(v3["onnx"], v3["param"], v3["bin"], input=tmp_path / "short.png", options=["default", "fp32"])
    assert r.input.padded and r.input.content_width == 180
    out = r.default.row("out0")
    assert out.content is not None and out.padded is not None
    (rec,) = r.default.rec
    assert rec.content_steps == 23 and rec.agree_content is not None and rec.agree_padded is not None
    assert rec.text_ref and rec.text_equal
    assert "padded region" in render_text(r)


def test_v3_fp16_weights_reported() -> None:
    onnx = fixtures.require(fixtures.ppocrv3_rec_onnx, "PP-OCRv3 rec ONNX")
    param, bin = fixtures.require(lambda: fixtures.ppocrv3_rec_ncnn(True), "pnnx conversion of PP-OCRv3 rec (fp16=1)")
    r = compare_models(onnx, param, bin, options=["default", "fp32"], input=None)
    att = r.attribution
    assert len(att.fp16_weight_layers) >= 0.8 * att.weighted_layers
    assert any(a.action == "reconvert" for a in r.advice)
    assert np.isfinite(r.runs["fp32"].final_max_abs)


def test_detector_without_shape_gets_the_detector_default() -> None:
    """A detector's ONNX leaves H and W open and pnnx's Input layer carries no shape: the random input is the
    detector default 3x640x640, named as such (it was the recogniser's 3x48x320)."""
    onnx = fixtures.require(fixtures.ppocrv3_det_onnx, "PP-OCRv3 det ONNX")
    param, bin = fixtures.require(lambda: fixtures.ppocrv3_det_ncnn_any_size(False), "PP-OCRv3 det, pnnx, any size")
    report = compare_models(onnx, param, bin, options=["fp32"])
    assert tuple(report.input.array.shape) == (1, 3, 640, 640)
    assert "detection" in report.input.shape_note
    out = next(iter(report.runs["fp32"].outputs.values()))
    assert out.count == 640 * 640 and out.max_abs < 1e-4  # fp32 on x86 against onnxruntime at that size
