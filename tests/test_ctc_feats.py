"""ctc-feats: expose a PaddleOCR CTC head's features and logits (synthetic heads + the real PP-OCRv3 rec)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from ncnnpass.cli.main import main
from ncnnpass.ir.errors import GraphError
from ncnnpass.passes.onnx.ctc_feats import add_ctc_feats, find_ctc_heads


def head_model(d: int = 8, k: int = 6, mid: int | None = None, bias: bool = True, swap_add: bool = False,
               opset: int = 12, axis: int | None = 2, const_node: bool = False, seed: int = 0,
               name: str = "softmax_0.tmp_0") -> onnx.ModelProto:
    """x[N,T,d] -> Relu -> [MatMul(mid)+Add] -> MatMul(k) [+Add] -> Softmax -> output."""
    rng = np.random.default_rng(seed)
    nodes, inits = [helper.make_node("Relu", ["x"], ["neck"], name="relu")], []
    cur, width = "neck", d
    if mid:
        inits += [numpy_helper.from_array(rng.standard_normal((d, mid)).astype(np.float32), "w1"),
                  numpy_helper.from_array(rng.standard_normal(mid).astype(np.float32), "b1")]
        nodes += [helper.make_node("MatMul", [cur, "w1"], ["fc1_mm"], name="fc1"),
                  helper.make_node("Add", ["fc1_mm", "b1"], ["fc1_out"], name="fc1_add")]
        cur, width = "fc1_out", mid
    w2 = rng.standard_normal((width, k)).astype(np.float32)
    if const_node:
        nodes.append(helper.make_node("Constant", [], ["w2"], value=numpy_helper.from_array(w2, "w2c")))
    else:
        inits.append(numpy_helper.from_array(w2, "w2"))
    nodes.append(helper.make_node("MatMul", [cur, "w2"], ["fc2_mm"], name="fc2"))
    logits = "fc2_mm"
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(k).astype(np.float32), "b2"))
        nodes.append(helper.make_node("Add", ["b2", "fc2_mm"] if swap_add else ["fc2_mm", "b2"], ["fc2_out"],
                                      name="fc2_add"))
        logits = "fc2_out"
    attrs = {} if axis is None else {"axis": axis}
    nodes.append(helper.make_node("Softmax", [logits], [name], name="softmax", **attrs))
    graph = helper.make_graph(
        nodes, "rec", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", d])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", "T", k])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    helper.set_model_props(model, {"character": "a\nb\nc"})
    onnx.checker.check_model(model)
    return model


def run(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x}), strict=True))


def constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    w = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            w[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return w


def numpy_head(model: onnx.ModelProto, x: np.ndarray, mid: bool, bias: bool) -> tuple[np.ndarray, np.ndarray]:
    w = constants(model)
    feats = np.maximum(x, 0)
    if mid:
        feats = feats @ w["w1"] + w["b1"]
    logits = feats @ w["w2"] + (w["b2"] if bias else 0)
    return feats, logits


@pytest.mark.parametrize("kwargs", [
    {}, {"mid": 5}, {"bias": False}, {"swap_add": True}, {"opset": 13, "axis": -1}, {"opset": 13, "axis": None},
    {"const_node": True}, {"axis": -1},
], ids=["fc", "mid_channels", "no_bias", "bias_first", "opset13", "opset13_default_axis", "constant_node",
        "axis_minus1"])
def test_synthetic_heads(kwargs):
    model = head_model(**kwargs)
    before = model.SerializeToString()
    res = add_ctc_feats(model)
    assert model.SerializeToString() == before, "the input model must not be modified"
    onnx.checker.check_model(res.model, full_check=True)
    assert [o.name for o in res.model.graph.output] == ["softmax_0.tmp_0", "feats", "logits"]
    assert res.model.graph.output[0] == model.graph.output[0]
    assert {p.key: p.value for p in res.model.metadata_props} == {"character": "a\nb\nc"}
    assert res.mid_channels == kwargs.get("mid")
    assert res.feat_dim == kwargs.get("mid", 8) and res.num_classes == 6
    x = np.random.default_rng(1).standard_normal((2, 7, 8)).astype(np.float32)
    got, ref = run(res.model, x), run(model, x)
    np.testing.assert_array_equal(got["softmax_0.tmp_0"], ref["softmax_0.tmp_0"])
    feats, logits = numpy_head(model, x, bool(kwargs.get("mid")), kwargs.get("bias", True))
    assert got["feats"].shape == (2, 7, res.feat_dim) and got["logits"].shape == (2, 7, 6)
    np.testing.assert_allclose(got["feats"], feats, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["logits"], logits, rtol=1e-5, atol=1e-5)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=st.integers(1, 12), k=st.integers(2, 12), mid=st.one_of(st.none(), st.integers(1, 9)),
       bias=st.booleans(), n=st.integers(1, 3), t=st.integers(1, 9), seed=st.integers(0, 1000))
def test_heads_property(d, k, mid, bias, n, t, seed):
    model = head_model(d=d, k=k, mid=mid, bias=bias, seed=seed)
    res = add_ctc_feats(model)
    x = np.random.default_rng(seed).standard_normal((n, t, d)).astype(np.float32)
    got = run(res.model, x)
    feats, logits = numpy_head(model, x, mid is not None, bias)
    np.testing.assert_allclose(got[res.feats], feats, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[res.logits], logits, rtol=1e-4, atol=1e-4)
    e = np.exp(got[res.logits] - got[res.logits].max(-1, keepdims=True))
    np.testing.assert_allclose(got[res.probs], e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_idempotent_and_name_clash():
    res = add_ctc_feats(head_model())
    again = add_ctc_feats(res.model)
    assert [o.name for o in again.model.graph.output] == ["softmax_0.tmp_0", "feats", "logits"]
    # a tensor already called "feats" is not reused for something else
    model = head_model()
    for node in model.graph.node:
        node.output[:] = ["feats" if o == "neck" else o for o in node.output]
        node.input[:] = ["feats" if i == "neck" else i for i in node.input]
    model.graph.node[-1].output[0] = "softmax_0.tmp_0"
    res = add_ctc_feats(model)
    assert res.feats == "feats_1"


@pytest.mark.parametrize("breakage, message", [
    ("no_softmax", "not Softmax"),
    ("axis1", "not over the last axis"),
    ("dynamic_weight", "not MatMul(x, constant W)"),
])
def test_no_ctc_head(breakage, message):
    model = head_model()
    if breakage == "no_softmax":
        model.graph.node[-1].op_type = "Relu"
        del model.graph.node[-1].attribute[:]
    elif breakage == "axis1":
        model.graph.node[-1].attribute[0].i = 1
    else:
        w2 = next(i for i in model.graph.initializer if i.name == "w2")
        model.graph.initializer.remove(w2)
        model.graph.input.append(helper.make_tensor_value_info("w2", TensorProto.FLOAT, [8, 6]))
    with pytest.raises(GraphError, match="no CTC head found") as info:
        add_ctc_feats(model)
    assert message in str(info.value)


def test_several_heads_need_a_choice():
    a = head_model()
    b = head_model(name="other_softmax", seed=3)
    for node in b.graph.node:
        node.name = "b_" + node.name
        node.input[:] = [i if i == "x" else "b_" + i for i in node.input]
        node.output[:] = ["b_" + o for o in node.output]
    for init in b.graph.initializer:
        init.name = "b_" + init.name
    a.graph.node.extend(b.graph.node)
    a.graph.initializer.extend(b.graph.initializer)
    out = b.graph.output[0]
    out.name = "b_other_softmax"
    a.graph.output.append(out)
    assert [h.probs for h in find_ctc_heads(a)] == ["softmax_0.tmp_0", "b_other_softmax"]
    with pytest.raises(GraphError, match="several CTC heads"):
        add_ctc_feats(a)
    res = add_ctc_feats(a, output="b_other_softmax")
    assert [o.name for o in res.model.graph.output] == ["softmax_0.tmp_0", "b_other_softmax", "feats", "logits"]
    with pytest.raises(GraphError, match="no graph output named"):
        add_ctc_feats(a, output="nope")


@pytest.mark.real
def test_ppocrv3_real(ppocrv3_rec_onnx):
    model = onnx.load(str(ppocrv3_rec_onnx))
    res = add_ctc_feats(model)
    onnx.checker.check_model(res.model)
    assert res.probs == "softmax_5.tmp_0" and res.feat_dim == 64 and res.num_classes == 6625
    assert res.mid_channels is None
    assert [o.name for o in res.model.graph.output] == ["softmax_5.tmp_0", "feats", "logits"]
    assert res.model.graph.output[0] == model.graph.output[0]
    assert dict((p.key, p.value) for p in res.model.metadata_props) == {
        p.key: p.value for p in model.metadata_props}
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 48, 320)).astype(np.float32)
    got, ref = run(res.model, x), run(model, x)
    diff = float(np.abs(got["softmax_5.tmp_0"] - ref["softmax_5.tmp_0"]).max())
    assert diff <= 1e-6, diff  # measured 0.0
    assert got["feats"].shape == (2, 40, 64) and got["logits"].shape == (2, 40, 6625)
    w = constants(model)
    logits = got["feats"].astype(np.float64) @ w["linear_21.w_0"] + w["linear_21.b_0"]
    np.testing.assert_allclose(got["logits"], logits, rtol=1e-4, atol=1e-4)
    e = np.exp(got["logits"] - got["logits"].max(-1, keepdims=True))
    np.testing.assert_allclose(got["softmax_5.tmp_0"], e / e.sum(-1, keepdims=True), atol=1e-5)


def test_cli(tmp_path, capsys):
    src, out = tmp_path / "m.onnx", tmp_path / "out.onnx"
    onnx.save(head_model(mid=4), str(src))
    assert main(["ctc-feats", str(src), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "mid_channels" in err and "feats" in err
    assert [o.name for o in onnx.load(str(out)).graph.output] == ["softmax_0.tmp_0", "feats", "logits"]

    assert main(["ctc-feats", str(src), "-o", str(src)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err

    broken = head_model()
    broken.graph.node[-1].op_type = "Relu"
    del broken.graph.node[-1].attribute[:]
    onnx.save(broken, str(src))
    assert main(["ctc-feats", str(src), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ncnnpass ctc-feats: error: no CTC head found") and err.count("\n") == 1

    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert main(["ctc-feats", str(tmp_path / "junk.onnx"), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not a readable ONNX model" in err and err.count("\n") == 1
    assert main(["ctc-feats", str(tmp_path / "missing.onnx"), "-o", str(out)]) == 1
    assert "No such file" in capsys.readouterr().err
