"""``ncnnpass compare`` on small synthetic models (fast): an ONNX SE block and its ncnn conversion written
in both converters' naming styles (pnnx: numbered blobs; onnx2ncnn: ONNX tensor names with Split tops).

The SE block reproduces the seed's problem in miniature: under ncnn's default options on x86 (F16C)
InnerProduct runs with fp16-converted weights, so the two InnerProducts after global pooling diverge.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ncnnpass.cli.main import main
from ncnnpass.ir import Graph
from ncnnpass.ir.errors import RuntimeBridgeError
from ncnnpass.passes.compare import (
    InputError,
    ModelMismatchError,
    OptionSet,
    candidate_layouts,
    compare_models,
    compute_metrics,
    parse_option_sets,
)
from ncnnpass.passes.compare.inputs import prepare_input
from ncnnpass.passes.compare.output import load_npz
from ncnnpass.passes.compare.render import render_text

C, H, W, F, R, OUT = 8, 6, 10, 32, 16, 12
SHAPE = (C, H, W)


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def n(*s: int) -> np.ndarray:
        return (rng.standard_normal(s) * 0.3).astype(np.float32)

    return {"w1": n(F, C, 3, 3), "b1": n(F), "w2": n(R, F, 1, 1), "b2": n(R), "w3": n(F, R, 1, 1), "b3": n(F),
            "w4": n(OUT, F, 1, 1), "b4": n(OUT)}


def build_onnx(path: Path, seed: int = 0, character: list[str] | None = None) -> Path:
    """x[1,C,H,W] -> Conv3x3+Relu -> SE (GAP, Conv1x1+Relu, Conv1x1, HardSigmoid, Mul) -> Conv1x1."""
    w = _weights(seed)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["conv1"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv1"], ["relu1"]),
        helper.make_node("GlobalAveragePool", ["relu1"], ["gap"]),
        helper.make_node("Conv", ["gap", "w2", "b2"], ["se1"], kernel_shape=[1, 1]),
        helper.make_node("Relu", ["se1"], ["se1_relu"]),
        helper.make_node("Conv", ["se1_relu", "w3", "b3"], ["se2"], kernel_shape=[1, 1]),
        helper.make_node("HardSigmoid", ["se2"], ["se_gate"], alpha=1 / 6, beta=0.5),
        helper.make_node("Mul", ["relu1", "se_gate"], ["scaled"]),
        helper.make_node("Conv", ["scaled", "w4", "b4"], ["out"], kernel_shape=[1, 1]),
    ]
    g = helper.make_graph(nodes, "se", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, H, W])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, OUT, H, W])],
                          [numpy_helper.from_array(v, k) for k, v in w.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    if character is not None:
        helper.set_model_props(m, {"character": "\n".join(character)})
    onnx.save(m, path)
    return path


def build_ncnn(param: Path, bin: Path, style: str = "pnnx", seed: int = 0, storage: str = "fp32") -> tuple[Path, Path]:
    """The same network as ncnn: Conv (relu fused), Pooling 4=1, two InnerProducts, HardSigmoid, BinaryOp."""
    w = _weights(seed)
    if style == "pnnx":
        n = {"x": "in0", "relu1": "1", "gap": "2", "se1_relu": "3", "se2": "4", "se_gate": "5", "scaled": "6",
             "out": "out0"}
        split, a, b = "", "1", "1"
    else:  # onnx2ncnn: ONNX tensor names; a Split with one unused top keeps its _splitncnn_ names visible
        n = {k: k for k in ("x", "relu1", "gap", "se1_relu", "se2", "se_gate", "scaled", "out")}
        split = "Split splitncnn_0 1 3 relu1 relu1_splitncnn_0 relu1_splitncnn_1 relu1_splitncnn_2\n"
        a, b = "relu1_splitncnn_0", "relu1_splitncnn_1"
    body = (f"Input input 0 1 {n['x']}\n"
            f"Convolution conv1 1 1 {n['x']} {n['relu1']} 0={F} 1=3 4=1 5=1 6={F * C * 9} 9=1\n"
            + split
            + f"Pooling gap 1 1 {a} {n['gap']} 0=1 4=1\n"
            f"InnerProduct se1 1 1 {n['gap']} {n['se1_relu']} 0={R} 1=1 2={R * F} 9=1\n"
            f"InnerProduct se2 1 1 {n['se1_relu']} {n['se2']} 0={F} 1=1 2={F * R}\n"
            f"HardSigmoid hs 1 1 {n['se2']} {n['se_gate']} 0=0.1666667 1=0.5\n"
            f"BinaryOp mul 2 1 {b} {n['se_gate']} {n['scaled']} 0=2\n"
            f"Convolution conv2 1 1 {n['scaled']} {n['out']} 0={OUT} 1=1 5=1 6={OUT * F}\n")
    lines = body.strip().splitlines()
    blobs: set[str] = set()
    for ln in lines:
        t = ln.split()
        blobs.update(t[4:4 + int(t[2]) + int(t[3])])
    g = Graph.from_text(f"7767517\n{len(lines)} {len(blobs)}\n{body}")
    for layer, wk, bk in (("conv1", "w1", "b1"), ("se1", "w2", "b2"), ("se2", "w3", "b3"), ("conv2", "w4", "b4")):
        g.layer(layer).set_weight("weight", w[wk].reshape(-1), storage)
        g.layer(layer).set_weight("bias", w[bk])
    g.save(param, bin)
    return param, bin


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("compare_synth")
    out = {"onnx": build_onnx(d / "se.onnx"), "other_onnx": build_onnx(d / "other.onnx", seed=7)}
    out["pnnx_param"], out["pnnx_bin"] = build_ncnn(d / "pnnx.param", d / "pnnx.bin", "pnnx")
    out["o2n_param"], out["o2n_bin"] = build_ncnn(d / "o2n.param", d / "o2n.bin", "onnx2ncnn")
    out["fp16_param"], out["fp16_bin"] = build_ncnn(d / "fp16.param", d / "fp16.bin", "pnnx", storage="fp16")
    out["dir"] = d
    return out


@pytest.fixture(scope="module")
def pnnx_report(synth):
    return compare_models(synth["onnx"], synth["pnnx_param"], synth["pnnx_bin"], shape=SHAPE, fix=True,
                          keep_tensors=True)


# -- layouts and metrics ---------------------------------------------------------------------------

def test_layouts_squeeze_permute_reshape() -> None:
    (lay,) = candidate_layouts((1, 40, 120), (40, 120))
    assert lay.kind == "squeeze"
    perms = candidate_layouts((1, 120, 40), (40, 120))
    assert [p.kind for p in perms] == ["permute"]
    assert candidate_layouts((1, 4, 6), (5, 5)) == []
    assert candidate_layouts((1, 4, 6), (3, 8))[0].kind == "reshape"
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((1, 3, 1, 4, 5)).astype(np.float32)
    for lay in candidate_layouts(ref.shape, (5, 3, 4)):
        arr = lay.onnx_to_ncnn(ref)
        assert arr.shape == (5, 3, 4)
        np.testing.assert_array_equal(lay.ncnn_to_onnx(arr), ref)
        idx = np.array([0, 7, 59])
        np.testing.assert_array_equal(lay.gather(ref, idx), arr.reshape(-1)[idx])


def test_metrics_values_and_min_tol() -> None:
    ref = np.array([1.0, -2.0, 0.0, 4.0], np.float32)
    act = ref + np.array([1e-3, -2e-3, 1e-6, 0.0], np.float32)
    m = compute_metrics(act, ref)
    assert m.max_abs == pytest.approx(2e-3, rel=1e-3)
    assert m.mean_abs == pytest.approx((1e-3 + 2e-3 + 1e-6) / 4, rel=1e-3)
    assert m.scaled == pytest.approx(2e-3 / 4, rel=1e-3)
    assert np.allclose(act, ref, rtol=m.min_tol, atol=m.min_tol)
    assert not np.allclose(act, ref, rtol=m.min_tol * 0.9, atol=m.min_tol * 0.9)
    assert 0.999999 < m.cosine <= 1.0
    assert compute_metrics(-ref, ref).cosine == pytest.approx(-1.0)
    bad = compute_metrics(np.array([np.nan, 1.0]), np.array([1.0, 1.0]))
    assert bad.nonfinite == 1 and math.isinf(bad.max_abs)


def test_option_sets() -> None:
    sets = parse_option_sets(None)
    assert [s.name for s in sets] == ["default", "fp32", "no-packing", "no-sgemm-winograd", "bf16"]
    custom = parse_option_sets(["fp32,mine:use_fp16_storage=0,use_winograd_convolution=off"])
    assert [s.name for s in custom] == ["default", "fp32", "mine"]
    assert custom[2].dict == {"use_fp16_storage": False, "use_winograd_convolution": False}
    with pytest.raises(RuntimeBridgeError, match="unknown option set"):
        parse_option_sets(["fp64"])
    with pytest.raises(RuntimeBridgeError, match="no field"):
        parse_option_sets(["x:use_fp17=0"])
    assert OptionSet.preset("fp32").description.startswith("fp16 storage")


# -- inputs ------------------------------------------------------------------------------------------

def test_inputs_random_npy_image(tmp_path: Path) -> None:
    dims = [None, 3, None, None]
    a = prepare_input(None, dims, seed=3).array
    b = prepare_input(None, dims, seed=3).array
    assert a.shape == (1, 3, 48, 320) and np.array_equal(a, b) and a.min() >= -1 and a.max() <= 1
    np.save(tmp_path / "x.npy", a[0])
    assert np.array_equal(prepare_input(tmp_path / "x.npy", dims).array, a)
    with pytest.raises(InputError, match="dim 1 must be 3"):
        prepare_input(None, dims, shape=(1, 48, 320))
    with pytest.raises(InputError, match="batch"):
        prepare_input(np.zeros((2, 3, 48, 320), np.float32), dims)
    from PIL import Image

    img = Image.new("RGB", (60, 30), (200, 200, 200))
    img.save(tmp_path / "line.png")
    p = prepare_input(tmp_path / "line.png", dims, shape=(3, 48, 320))
    assert p.content_width == 96 and p.padded  # 60x30 -> height 48 keeps aspect: width 96, padded to 320
    assert np.all(p.array[..., 96:] == 0) and p.array.min() >= -1 and p.array.max() <= 1
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(InputError):
        prepare_input(tmp_path / "junk.png", dims)


# -- the synthetic SE block ----------------------------------------------------------------------------

def test_pnnx_style_mapping_divergence_and_attribution(pnnx_report) -> None:
    r = pnnx_report
    assert r.reference_check is not None and r.reference_check < 1e-5  # exposing tensors did not change ORT
    assert r.mapping.coverage == 1.0
    assert {m.how for m in r.mapping.mapped} == {"input", "value"}
    by_blob = {m.blob: m.tensor for m in r.mapping.mapped}
    assert by_blob["1"] == "relu1"  # the fused conv+relu maps to the last tensor of the chain
    assert by_blob["3"] == "se1_relu" and by_blob["out0"] == "out"
    d = r.default
    first = d.first_divergence
    assert first is not None and first.layer == "se1" and first.layer_type == "InnerProduct"
    assert [x.layer for x in d.divergent] == ["se1", "se2"]
    assert r.attribution.cause == "fp32" and r.attribution.fields == ["use_fp16_storage"]
    assert [c.layer for c in r.attribution.carriers] == ["se1", "se2"]
    assert all(c.after_global_pooling for c in r.attribution.carriers)
    assert r.runs["fp32"].final_max_abs < d.final_max_abs / 10
    assert r.advice[0].action == "gap-fc-to-conv" and r.advice[0].layers == ["se1", "se2"]
    # isolated error: the HardSigmoid after the InnerProducts inherits error but computes exactly
    hs = d.row("5")
    assert hs is not None and hs.iso is not None and hs.iso.scaled < 1e-6 < hs.cum.scaled


def test_fix_applies_gap_fc_to_conv(pnnx_report) -> None:
    r = pnnx_report
    assert r.fixed is not None
    assert r.fixed.default.final_max_abs <= 1e-5 < r.default.final_max_abs
    assert not r.fixed.default.divergent
    assert any("gap-fc-to-conv" in line for line in r.fix_log)
    types = {ly.name: ly.type for ly in r.fixed.graph.layers}
    assert types["se1"] == "Convolution" and types["se2"] == "Convolution"
    text = render_text(r)
    assert "<< first divergence" in text and "after --fix" in text and "use_fp16_storage" in text


def test_onnx2ncnn_style_maps_by_name(synth) -> None:
    r = compare_models(synth["onnx"], synth["o2n_param"], synth["o2n_bin"], shape=SHAPE, options=["default", "fp32"])
    hows = {m.blob: m.how for m in r.mapping.blobs}
    assert hows["se1_relu"] == "name" and hows["out"] == "name" and hows["x"] == "input"
    # a Split with an unused top stays a layer (ncnn reports that top as an output): its tops map to its source
    split_tops = [b for b in hows if "_splitncnn_" in b]
    assert split_tops and all(hows[b] == "name (split)" for b in split_tops), hows
    assert r.mapping.coverage == 1.0
    assert r.default.first_divergence.layer == "se1"


def test_fp16_weights_are_reported(synth) -> None:
    r = compare_models(synth["onnx"], synth["fp16_param"], synth["fp16_bin"], shape=SHAPE, options=["default", "fp32"])
    assert sorted(r.attribution.fp16_weight_layers) == ["conv1", "conv2", "se1", "se2"]
    assert any("stored fp16" in s for s in r.attribution.summary)
    assert any(a.action == "reconvert" for a in r.advice)


def test_mismatched_models_and_shapes(synth) -> None:
    with pytest.raises(ModelMismatchError, match="does not look like a conversion"):
        compare_models(synth["other_onnx"], synth["pnnx_param"], synth["pnnx_bin"], shape=SHAPE, options=["default"])
    with pytest.raises(InputError, match="dim 1 must be 8"):
        compare_models(synth["onnx"], synth["pnnx_param"], synth["pnnx_bin"], shape=(3, 6, 10))


def test_save_json_plot_and_cli(synth, pnnx_report, tmp_path: Path, capsys) -> None:
    from ncnnpass.passes.compare.output import plot_png, save_npz

    save_npz(pnnx_report, str(tmp_path / "t.npz"))
    meta, arrays = load_npz(str(tmp_path / "t.npz"))
    assert "onnx/se1_relu" in arrays and "ncnn/default/3" in arrays and "ncnn/fp32/3" in arrays
    assert {m["blob"]: m["onnx_tensor"] for m in meta["mapping"]}["3"] == "se1_relu"
    plot_png(pnnx_report, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"

    rc = main(["compare", str(synth["onnx"]), str(synth["pnnx_param"]), str(synth["pnnx_bin"]), "--shape", "8,6,10",
               "--options", "default", "fp32", "--json", str(tmp_path / "r.json"), "--fix", "-q",
               "-o", str(tmp_path / "fixed.param"), str(tmp_path / "fixed.bin"), "--max-error", "1e-5"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "first divergence" in out and "gap-fc-to-conv" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["runs"]["default"]["first_divergence"] == "se1"
    assert rep["attribution"]["responsible_fields"] == ["use_fp16_storage"]
    assert rep["fixed"]["runs"]["default"]["final_max_abs"] <= 1e-5
    assert Graph.load(tmp_path / "fixed.param", tmp_path / "fixed.bin").layer("se1").type == "Convolution"

    rc = main(["compare", str(synth["onnx"]), str(synth["pnnx_param"]), str(synth["pnnx_bin"]), "--shape", "8,6,10",
               "--options", "default", "-q", "--max-error", "1e-6", "--brief"])
    assert rc == 3 and "exceeds --max-error" in capsys.readouterr().err

    rc = main(["compare", str(synth["other_onnx"]), str(synth["pnnx_param"]), str(synth["pnnx_bin"]),
               "--shape", "8,6,10", "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "does not look like a conversion" in err


def test_recognition_outputs_decode(tmp_path: Path) -> None:
    """A (1, T, classes) output: per-timestep argmax agreement and CTC-decoded text from ONNX metadata."""
    T, K = 6, 5
    rng = np.random.default_rng(0)
    wgt = rng.standard_normal((K, 4)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["logits"]), helper.make_node("Softmax", ["logits"], ["prob"], axis=2)]
    g = helper.make_graph(nodes, "rec", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, T, 4])],
                          [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, T, K])],
                          [numpy_helper.from_array(wgt.T.copy(), "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    helper.set_model_props(m, {"character": "a\nb\nc"})  # blank + a b c + space = 5 classes
    onnx.save(m, tmp_path / "rec.onnx")
    text = ("7767517\n3 3\nInput in0 0 1 in0\n"
            f"InnerProduct fc 1 1 in0 1 0={K} 1=0 2={K * 4}\nSoftmax sm 1 1 1 out0 0=1 1=1\n")
    gr = Graph.from_text(text)
    gr.layer("fc").set_weight("weight", wgt.reshape(-1))
    gr.save(tmp_path / "rec.param", tmp_path / "rec.bin")
    r = compare_models(tmp_path / "rec.onnx", tmp_path / "rec.param", tmp_path / "rec.bin", options=["default", "fp32"])
    (rec,) = r.default.rec
    assert rec.timesteps == T and rec.classes == K and rec.agree == T
    assert rec.text_ref is not None and rec.text_equal


def test_innerproduct_without_pooling_gets_keep_fp32(tmp_path: Path) -> None:
    """InnerProducts not fed by global pooling cannot become 1x1 convolutions: advise and apply 31=2."""
    rng = np.random.default_rng(1)
    w1, b1 = rng.standard_normal((32, 64)).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    w2, b2 = rng.standard_normal((16, 32)).astype(np.float32), rng.standard_normal(16).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h0"], transB=1), helper.make_node("Relu", ["h0"], ["h"]),
             helper.make_node("Gemm", ["h", "w2", "b2"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
                          [numpy_helper.from_array(a, n) for n, a in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "mlp.onnx")
    gr = Graph.from_text("7767517\n3 3\nInput in0 0 1 in0 0=64\n"
                         "InnerProduct fc1 1 1 in0 1 0=32 1=1 2=2048 9=1\nInnerProduct fc2 1 1 1 out0 0=16 1=1 2=512\n")
    for name, w, b in (("fc1", w1, b1), ("fc2", w2, b2)):
        gr.layer(name).set_weight("weight", w.reshape(-1))
        gr.layer(name).set_weight("bias", b)
    gr.save(tmp_path / "mlp.param", tmp_path / "mlp.bin")
    r = compare_models(tmp_path / "mlp.onnx", tmp_path / "mlp.param", tmp_path / "mlp.bin",
                       options=["default", "fp32"], fix=True)
    assert r.input.array.shape == (1, 64) and r.mapping.coverage == 1.0
    assert [x.layer for x in r.default.divergent] == ["fc1", "fc2"]
    (item,) = [a for a in r.advice if a.action == "keep-fp32"]
    assert item.layers == ["fc1", "fc2"] and item.featmask == 2
    assert r.fixed is not None and r.fixed.default.final_max_abs < r.default.final_max_abs / 10
    assert all(ly.featmask & 2 for ly in r.fixed.graph.layers if ly.type == "InnerProduct")
    assert any("keep-fp32[names=fc1|fc2,bits=2]" in line for line in r.fix_log), r.fix_log  # the real pass


def test_memorydata_maps_to_initializer(tmp_path: Path) -> None:
    """pnnx writes ONNX constants as MemoryData layers: they map to the initializer with equal values."""
    rng = np.random.default_rng(2)
    bias = rng.standard_normal((1, 8, 1, 1)).astype(np.float32)
    g = helper.make_graph([helper.make_node("Add", ["x", "bias"], ["y"])], "add",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4, 5])],
                          [numpy_helper.from_array(bias, "bias")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "add.onnx")
    gr = Graph.from_text("7767517\n3 3\nInput in0 0 1 in0\nMemoryData md 0 1 1 0=1 1=1 2=8\n"
                         "BinaryOp add 2 1 in0 1 out0 0=0\n")
    gr.layer("md").set_weight("data", bias.reshape(-1))
    gr.save(tmp_path / "add.param", tmp_path / "add.bin")
    r = compare_models(tmp_path / "add.onnx", tmp_path / "add.param", tmp_path / "add.bin", options=["default"])
    hows = {mm.blob: (mm.tensor, mm.how) for mm in r.mapping.blobs}
    assert hows["1"] == ("bias", "value (constant)") and hows["out0"] == ("y", "value")
    row = r.default.row("out0")
    assert row.iso is not None and row.cum.max_abs < 1e-6
