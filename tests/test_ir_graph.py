"""The scripting API on a small converter-style model (pnnx naming: numbered blobs, ``splitncnn_N``).

Every edited graph is written to files and run by the ncnn wheel with light mode ON (the mode in which
a blob with two consumers and no Split breaks), and its outputs are compared bit for bit with an
equivalent graph built another way (or with the unedited model where the edit must not change them).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import ncnn
import numpy as np
import pytest
from support.ncnn_check import param_text_accepted, run_files

from ncnnpass.ir import Graph, GraphError, Layer, NcnnpassError, WeightError
from ncnnpass.ir.parser import parse_param

X = np.random.default_rng(7).uniform(-1, 1, (3, 8, 8)).astype(np.float32)


def line(type_: str, name: str, ins: list[str], outs: list[str], params: str = "") -> str:
    s = f"{type_:<24} {name:<24} {len(ins)} {len(outs)}" + "".join(" " + b for b in (*ins, *outs))
    return s + (" " + params if params else "")


BASE_LINES = [
    line("Input", "in0", [], ["in0"], "0=8 1=8 2=3"),
    line("Convolution", "conv1", ["in0"], ["1"], "0=4 1=3 4=1 5=1 6=108"),
    line("ReLU", "relu1", ["1"], ["2"]),
    line("Split", "splitncnn_0", ["2"], ["3", "4"]),
    line("Convolution", "conv2", ["3"], ["5"], "0=4 1=1 5=1 6=16"),
    line("BinaryOp", "add", ["4", "5"], ["6"], "0=0"),
    line("Split", "splitncnn_1", ["6"], ["7", "8"]),
    line("Pooling", "gap", ["7"], ["9"], "0=1 4=1"),
    line("InnerProduct", "fc", ["9"], ["out0"], "0=5 1=1 2=20"),
    line("Sigmoid", "sig", ["8"], ["out1"]),
]
BASE = "7767517\n10 12\n" + "\n".join(BASE_LINES) + "\n"
WEIGHTS = {"conv1": {"weight": 108, "bias": 4}, "conv2": {"weight": 16, "bias": 4}, "fc": {"weight": 20, "bias": 5}}


def fill_weights(g: Graph, seed: int = 0) -> Graph:
    r = np.random.default_rng(seed)
    for lname, ws in WEIGHTS.items():
        for wname, n in ws.items():
            g.layer(lname).set_weight(wname, r.normal(size=n) * 0.5)
    return g


@pytest.fixture
def base(tmp_path: Path) -> tuple[Path, Path]:
    """pnnx-style files: base.param (BASE exactly) and base.bin."""
    g = fill_weights(Graph.from_text(BASE))
    g.save(tmp_path / "base.param", tmp_path / "base.bin")
    assert (tmp_path / "base.param").read_text() == BASE
    return tmp_path / "base.param", tmp_path / "base.bin"


def save(g: Graph, d: Path, stem: str) -> tuple[Path, Path]:
    p, b = d / f"{stem}.param", d / f"{stem}.bin"
    g.save(p, b)
    return p, b


def run(p: Path, b: Path | None, outputs=("out0", "out1"), x=X, preset="default") -> dict[str, np.ndarray]:
    return run_files(p, b, {"in0": x}, outputs, preset)  # light mode on


def assert_valid_for_ncnn(param: Path) -> None:
    """Every blob is read by at most one layer line and produced once; header counts exact; ncnn loads it."""
    text = param.read_text()
    pf = parse_param(text)
    consumers: dict[str, int] = {}
    produced: set[str] = set()
    for ly in pf.layers:
        for b in ly.inputs:
            consumers[b] = consumers.get(b, 0) + 1
            assert b in produced, f"{b!r} read before it is produced"
        for b in ly.outputs:
            assert b not in produced, f"{b!r} produced twice"
            produced.add(b)
    assert max(consumers.values()) == 1, {b: n for b, n in consumers.items() if n > 1}
    assert pf.layer_count == len(pf.layers)
    assert pf.blob_count == len(produced | set(consumers))
    assert param_text_accepted(text)


def bits_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a)


def split_lines(param: Path) -> list[str]:
    return [" ".join(ln.split()) for ln in param.read_text().splitlines() if ln.startswith("Split")]


# ---------------------------------------------------------------------------------------- queries
def test_find_by_type_name_predicate(base):
    g = Graph.load(*base)
    assert [ly.name for ly in g.find("Convolution")] == ["conv1", "conv2"]
    assert [ly.name for ly in g.find(["Sigmoid", "Convolution", "ReLU"])] == ["conv1", "relu1", "conv2", "sig"]
    assert [ly.name for ly in g.find(name="add")] == ["add"]
    assert g.find(name="nope") == [] and g.find("Nope") == []
    assert [ly.name for ly in g.find("Convolution", where=lambda ly: ly.get("kernel_w") == 1)] == ["conv2"]
    assert [ly.name for ly in g.find(where=lambda ly: ly.get("num_output", 0) == 5)] == ["fc"]
    assert g.find("Convolution", name="fc") == []
    assert g.count_by_type("Convolution") == 2 and g.types()["Pooling"] == 1
    assert "Split" not in g.types()  # absorbed: a blob simply has two consumers
    assert [c.name for c in g.blob("2").consumers] == ["conv2", "add"]
    assert g.layer("conv2").i().name == "relu1" and g.layer("relu1").o(1).name == "add"
    assert g.inputs == ["in0"] and g.outputs == ["out0", "out1"]
    with pytest.raises(GraphError, match="no layer named 'nope'"):
        g.layer("nope")
    with pytest.raises(GraphError, match="no blob named 'nope'"):
        g.blob("nope")
    assert g.layer("conv1").get("kernel_h") == 3  # schema default follows kernel_w
    assert g.layer("conv1").get("stride_w") == 1


# ------------------------------------------------------------------------- unchanged round trip
def test_unchanged_graph_round_trips_exactly(base, tmp_path):
    g = Graph.load(*base)
    assert set(g.splits) == {"2", "6"}
    p, b = save(g, tmp_path, "rt")
    assert p.read_text() == BASE and b.read_bytes() == base[1].read_bytes()
    assert bits_equal(run(*base), run(p, b))


def test_onnx2ncnn_style_split_names_are_kept(tmp_path):
    text = ("7767517\n5 6\nInput in 0 1 data\nSplit splitncnn_input0 1 2 data data_splitncnn_0 data_splitncnn_1\n"
            "ReLU relu 1 1 data_splitncnn_1 r\nSigmoid sig 1 1 data_splitncnn_0 s\nBinaryOp mul 2 1 r s out 0=2\n")
    g = Graph.from_text(text)
    assert [ly.type for ly in g] == ["Input", "ReLU", "Sigmoid", "BinaryOp"]
    out = g.to_param_text()
    assert [ln.split() for ln in out.splitlines()] == [ln.split() for ln in text.splitlines()]


def test_split_with_an_unused_top_stays_and_the_top_stays_an_output(tmp_path):
    """onnx2ncnn leaves Splits with a top nobody reads; ncnn reports that top as an output, so does ncnnpass."""
    text = ("7767517\n4 6\nInput in 0 1 in\nSplit sp 1 3 in a b c\nReLU r 1 1 a out\nTanH t 1 1 b out2\n")
    g = Graph.from_text(text)
    assert [ly.type for ly in g] == ["Input", "Split", "ReLU", "TanH"]
    net = ncnn.Net()
    assert net.load_param_mem(text) == 0
    assert sorted(g.outputs) == sorted(net.output_names()) == ["c", "out", "out2"]
    assert [ln.split() for ln in g.to_param_text().splitlines()] == [ln.split() for ln in text.splitlines()]
    assert_valid_for_ncnn(save(g, tmp_path, "u")[0])


# ------------------------------------------------------------------------------- Split regeneration
def test_second_consumer_gets_a_generated_split_and_others_keep_their_names(base, tmp_path):
    g = Graph.load(*base)
    before = run(*base, outputs=("out0", "out1", "1"))
    g.add_layer("TanH", "tanh", ["1"], ["t"], after=g.layer("conv1"))  # blob 1 gets a second consumer
    p, b = save(g, tmp_path, "e")
    assert_valid_for_ncnn(p)
    splits = split_lines(p)
    assert "Split splitncnn_0 1 2 2 3 4" in splits and "Split splitncnn_1 1 2 6 7 8" in splits
    new = [s for s in splits if " 1 1_splitncnn_0 1_splitncnn_1" in s]
    assert len(new) == 1 and re.fullmatch(r"Split splitncnn_\d+ 1 2 1 1_splitncnn_0 1_splitncnn_1", new[0]), splits
    after = run(p, b, outputs=("out0", "out1", "t"))
    assert bits_equal({k: after[k] for k in ("out0", "out1")}, {k: before[k] for k in ("out0", "out1")})
    np.testing.assert_allclose(after["t"], np.tanh(before["1"]), rtol=1e-5, atol=1e-6)


def test_new_split_on_the_input_keeps_existing_split_names(base, tmp_path):
    """The generated name must not steal ``splitncnn_0`` from an unchanged Split later in the graph."""
    g = Graph.load(*base)
    g.add_layer("Sigmoid", "sig_in", ["in0"], ["s_in"], after=g.layer("in0"))
    p, b = save(g, tmp_path, "e")
    assert_valid_for_ncnn(p)
    splits = split_lines(p)
    assert "Split splitncnn_0 1 2 2 3 4" in splits and "Split splitncnn_1 1 2 6 7 8" in splits, splits
    assert bits_equal(run(p, b), run(*base))


def test_consumer_reading_a_blob_twice(base, tmp_path):
    g = Graph.load(*base)
    sq = g.add_layer("BinaryOp", "square", ["out0", "out0"], ["sq"], params={0: 2})
    assert sq.inputs == ("out0", "out0") and len(g.blob("out0").consumers) == 2
    g.outputs = ["sq", "out1"]
    p, b = save(g, tmp_path, "e")
    assert_valid_for_ncnn(p)
    y = run(p, b, outputs=("sq",))["sq"]
    np.testing.assert_allclose(y, run(*base)["out0"] ** 2, rtol=1e-6)


def test_removing_a_consumer_drops_the_split(base, tmp_path):
    g = Graph.load(*base)
    g.remove(g.layer("sig"))  # blob 6 keeps one consumer
    g.outputs = ["out0"]
    p, b = save(g, tmp_path, "e")
    assert_valid_for_ncnn(p)
    assert split_lines(p) == ["Split splitncnn_0 1 2 2 3 4"]
    assert bits_equal(run(p, b, outputs=("out0",)), {"out0": run(*base)["out0"]})


@pytest.mark.parametrize("new", ["3", "7", "8", "2_splitncnn_0"])
def test_new_blob_named_like_an_absorbed_split_top(base, tmp_path, new):
    """pnnx numbers blobs, so a pass may well name a new blob "7" — a name the absorbed Split used."""
    g = Graph.load(*base)
    g.add_layer("ReLU", "extra", ["out1"], [new])
    g.outputs = ["out0", new]
    p, b = save(g, tmp_path, "e")
    assert_valid_for_ncnn(p)
    y = run(p, b, outputs=("out0", new))
    ref = run(*base)
    assert bits_equal({"out0": y["out0"]}, {"out0": ref["out0"]})
    np.testing.assert_array_equal(y[new], np.maximum(ref["out1"], 0))


def test_rename_a_blob_to_an_absorbed_split_top_name(base, tmp_path):
    g = Graph.load(*base)
    g.rename_blob("9", "4")  # "4" was a top of splitncnn_0
    p, b = save(g, tmp_path, "e")
    assert_valid_for_ncnn(p)
    assert bits_equal(run(p, b), run(*base))


# --------------------------------------------------------------------------------------------- edits
def test_rename_blobs(base, tmp_path):
    g = Graph.load(*base)
    g.rename_blob("2", "relu_out")  # a Split source
    g.rename_blob("out0", "logits")  # a protected output
    assert g.outputs == ["logits", "out1"]
    assert [c.name for c in g.blob("relu_out").consumers] == ["conv2", "add"]
    with pytest.raises(GraphError, match="already exists"):
        g.rename_blob("5", "6")
    with pytest.raises(GraphError):
        g.rename_blob("nope", "x")
    p, b = save(g, tmp_path, "e")
    assert_valid_for_ncnn(p)
    assert "Split splitncnn_0 1 2 relu_out 3 4" in split_lines(p)
    y = run(p, b, outputs=("logits", "out1"))
    ref = run(*base)
    assert y["logits"].tobytes() == ref["out0"].tobytes() and y["out1"].tobytes() == ref["out1"].tobytes()


def test_remove_with_reconnect_equals_graph_built_without_it(base, tmp_path):
    g = Graph.load(*base)
    g.remove(g.layer("relu1"))  # blob 1 now feeds conv2 and add: a new Split
    p, b = save(g, tmp_path, "e")
    assert_valid_for_ncnn(p)
    ref = fill_weights(Graph.from_text(BASE.replace(line("ReLU", "relu1", ["1"], ["2"]) + "\n", "")
                                       .replace("10 12", "9 11").replace(" 1 2 2 3 4", " 1 2 1 3 4")))
    rp, rb = save(ref, tmp_path, "ref")
    assert bits_equal(run(p, b), run(rp, rb))
    with pytest.raises(GraphError, match="still consumed"):  # two inputs: nothing to reconnect to
        g.remove(g.layer("add"))


def test_replace_layer(base, tmp_path):
    g = Graph.load(*base)
    old = g.layer("relu1")
    clip = Layer("Clip", "clip1", old.inputs, old.outputs, params={0: 0.0, 1: 0.25})
    g.replace(old, clip)
    assert g.layer("clip1").params[1] == 0.25 and g.position(g.layer("clip1")) == 2
    p, b = save(g, tmp_path, "e")
    assert_valid_for_ncnn(p)
    ref = fill_weights(Graph.from_text(BASE.replace(line("ReLU", "relu1", ["1"], ["2"]),
                                                    line("Clip", "clip1", ["1"], ["2"], "0=0.0e+00 1=2.5e-01"))))
    rp, rb = save(ref, tmp_path, "ref")
    assert bits_equal(run(p, b), run(rp, rb))
    assert not bits_equal(run(p, b), run(*base))


def test_insert_layer_and_rewire(base, tmp_path):
    g = Graph.load(*base)
    sc = g.add_layer("Scale", "scale", ["1"], ["1s"], params={0: 4}, weights={"scale": np.full(4, 2.0)},
                     after=g.layer("conv1"))
    g.layer("relu1").inputs = ["1s"]
    assert g.blob("1").consumers == [sc] and g.layer("relu1").i() is sc
    p, b = save(g, tmp_path, "e")
    assert_valid_for_ncnn(p)
    # the same as doubling conv1's weights and bias
    ref = fill_weights(Graph.from_text(BASE))
    for wname in ("weight", "bias"):
        ref.layer("conv1").set_weight(wname, ref.layer("conv1").weight(wname) * 2)
    rp, rb = save(ref, tmp_path, "ref")
    y, r = run(p, b, preset="fp32"), run(rp, rb, preset="fp32")
    for k in y:
        np.testing.assert_allclose(y[k], r[k], rtol=1e-5, atol=1e-6)


def test_set_weights_fp32_and_fp16(base, tmp_path):
    g = Graph.load(*base)
    conv2 = g.layer("conv2")
    assert not conv2.weights["weight"].edited
    conv2.set_weight("weight", np.zeros(16))
    conv2.set_weight("bias", np.array([1.0, -2.0, 0.5, 3.0]))
    assert conv2.weights["weight"].edited and not g.layer("conv1").weights["weight"].edited
    p, b = save(g, tmp_path, "e")
    ref = run(*base, outputs=("2",))["2"]
    y = run(p, b, outputs=("6",))["6"]  # add = relu1 + conv2 = relu1 + bias
    np.testing.assert_allclose(y, ref + np.array([1.0, -2.0, 0.5, 3.0])[:, None, None], rtol=1e-6, atol=1e-6)

    w = np.random.default_rng(1).normal(size=108).astype(np.float32)
    g.layer("conv1").set_weight("weight", w, storage="fp16")
    p16, b16 = save(g, tmp_path, "e16")
    assert b16.stat().st_size == b.stat().st_size - 108 * 2
    g16 = Graph.load(p16, b16)
    assert g16.layer("conv1").weights["weight"].storage == "fp16"
    np.testing.assert_array_equal(g16.layer("conv1").weight("weight"), w.astype(np.float16).astype(np.float32))
    g32 = Graph.load(p16, b16)
    g32.layer("conv1").set_weight("weight", w.astype(np.float16).astype(np.float32), storage="fp32")
    p32, b32 = save(g32, tmp_path, "e32")
    assert bits_equal(run(p16, b16, preset="fp32"), run(p32, b32, preset="fp32"))

    with pytest.raises(WeightError, match="needs 16 values"):
        conv2.set_weight("weight", np.zeros(15))
    with pytest.raises(WeightError, match="raw float32"):
        conv2.set_weight("bias", np.zeros(4), storage="fp16")
    with pytest.raises(GraphError, match="reads no weight 'gamma'"):
        conv2.set_weight("gamma", np.zeros(4))


def test_build_a_graph_from_python(tmp_path):
    g = Graph()
    g.add_layer("Input", "data", [], ["data"], params={0: 8, 1: 8, 2: 3})
    r = np.random.default_rng(3)
    c = g.add_layer("Convolution", None, ["data"], ["c"], params={0: 2, 1: 1, 5: 1, 6: 6},
                    weights={"weight": r.normal(size=6), "bias": r.normal(size=2)}, storage="fp16")
    assert c.name == "convolution"
    g.add_layer("ReLU", None, ["c"], ["r"])
    g.add_layer("Sigmoid", None, ["c"], ["s"])
    g.add_layer("BinaryOp", None, ["r", "s"], ["out"], params={0: 2})
    assert len({ly.name for ly in g}) == 5 and g.check() == []
    p, b = save(g, tmp_path, "new")
    assert_valid_for_ncnn(p)
    head = p.read_text().splitlines()[1]
    assert head == "6 7"  # 5 layers + 1 Split; blobs data c r s out + 2 split tops
    y = run_files(p, b, {"data": X}, ["out"], "fp32")["out"]
    w = g.layer("convolution").weight("weight").reshape(2, 3).astype(np.float64)
    cc = np.einsum("oc,chw->ohw", w, X) + g.layer("convolution").weight("bias")[:, None, None]
    np.testing.assert_allclose(y, np.maximum(cc, 0) / (1 + np.exp(-cc)), rtol=1e-5, atol=1e-6)
    with pytest.raises(GraphError, match="already exists"):
        g.add_layer("ReLU", "relu", ["c"], ["r2"])
    with pytest.raises(GraphError, match="already produced"):
        g.add_layer("ReLU", "relu_again", ["c"], ["r"])
    with pytest.raises(GraphError, match="reads no weight"):
        g.add_layer("ReLU", "relu_w", ["c"], ["r3"], weights={"weight": np.zeros(1)})


def test_header_counts_follow_edits(base, tmp_path):
    g = Graph.load(*base)
    g.add_layer("TanH", "t1", ["2"], ["t1o"])
    g.add_layer("TanH", "t2", ["out1"], ["t2o"])
    g.remove(g.layer("gap"), reconnect=False)
    g.layer("fc").inputs = ["t2o"]
    g.layer("fc").set("weight_data_size", 5 * 256)
    g.layer("fc").set_weight("weight", np.zeros(5 * 256))
    g.toposort()
    g.cleanup()
    p, b = save(g, tmp_path, "e")
    assert_valid_for_ncnn(p)  # checks the header's layer and blob counts against the body
    Graph.load(p, b)  # and our own strict loader agrees


# --------------------------------------------------------------------------------- whole-graph ops
def test_check_reports_problems(base):
    g = Graph.load(*base)
    assert g.check() == []
    g.add_layer("Noop", "late_reader", ["late"], ["lr"], index=1)
    g.add_layer("Noop", "late_producer", ["in0"], ["late"])
    g.add_layer("Mystery", "m", ["in0"], ["m"])
    g.layer("conv2").weights.pop("bias")
    g.add_layer("ReLU", "bad name", ["in0"], ["x"])
    g.add_layer("ReLU", "orphan", ["ghost"], ["y"])
    g.remove(g.layer("sig"), reconnect=False)
    kinds = {(p.kind, p.layer) for p in g.check()}
    assert ("order", "late_reader") in kinds
    assert ("unknown-type", "m") in kinds
    assert ("weights", "conv2") in kinds
    assert ("name", "bad name") in kinds
    assert ("missing-producer", "orphan") in kinds
    assert ("output", None) in kinds  # out1 was a protected output
    with pytest.raises(GraphError):
        g.validate()


def test_toposort(base, tmp_path):
    g = Graph.load(*base)
    sig = g.layer("sig")
    g.remove(sig, reconnect=False)
    g.insert(Layer("Sigmoid", "sig", ["6"], ["out1"]), index=1)  # before its producer
    assert any(p.kind == "order" for p in g.check())
    order_before = [ly.name for ly in g]
    g.toposort()
    assert g.check() == []
    names = [ly.name for ly in g]
    assert names.index("sig") > names.index("add")
    assert [n for n in names if n != "sig"] == [n for n in order_before if n != "sig"]  # stable otherwise
    p, b = save(g, tmp_path, "e")
    assert_valid_for_ncnn(p)
    assert bits_equal(run(p, b), run(*base))
    g.add_layer("ReLU", "cyc_a", ["cb"], ["ca"])
    g.add_layer("ReLU", "cyc_b", ["ca"], ["cb"])
    with pytest.raises(GraphError, match="cycle"):
        g.toposort()


def test_out_of_order_graph_is_written_in_a_valid_order(base, tmp_path):
    """Appending a producer after its consumer must not produce a file ncnn (or our loader) misreads."""
    g = Graph.load(*base)
    g.add_layer("Scale", "late", ["1"], ["1s"], params={0: 4}, weights={"scale": np.full(4, 2.0)})  # at the end
    g.layer("relu1").inputs = ["1s"]
    assert any(p.kind == "order" for p in g.check())
    p, b = save(g, tmp_path, "e")  # written in topological order: .param and .bin alike
    assert_valid_for_ncnn(p)
    assert [ly.name for ly in g][-1] == "late"  # the graph itself is not reordered by saving
    g2 = Graph.load(p, b)
    assert [ly.name for ly in g2][:3] == ["in0", "conv1", "late"]
    sorted_p, sorted_b = save(g.toposort(), tmp_path, "sorted")
    assert sorted_p.read_text() == p.read_text() and sorted_b.read_bytes() == b.read_bytes()
    ref = fill_weights(Graph.from_text(BASE))
    for wname in ("weight", "bias"):
        ref.layer("conv1").set_weight(wname, ref.layer("conv1").weight(wname) * 2)
    y, r = run(p, b, preset="fp32"), run(*save(ref, tmp_path, "ref"), preset="fp32")
    for k in y:
        np.testing.assert_allclose(y[k], r[k], rtol=1e-5, atol=1e-6)


def test_cleanup_removes_dead_layers(base, tmp_path):
    g = Graph.load(*base)
    g.add_layer("TanH", "dead1", ["2"], ["d1"])
    g.add_layer("TanH", "dead2", ["d1"], ["d2"])
    removed = g.cleanup()
    assert sorted(ly.name for ly in removed) == ["dead1", "dead2"] and "d1" not in g.blobs
    g.outputs = ["out1"]
    removed = g.cleanup()
    assert sorted(ly.name for ly in removed) == ["fc", "gap"]
    assert [ly.name for ly in g] == ["in0", "conv1", "relu1", "conv2", "add", "sig"]
    p, b = save(g, tmp_path, "e")
    assert_valid_for_ncnn(p)
    assert split_lines(p) == ["Split splitncnn_0 1 2 2 3 4"]
    assert bits_equal(run(p, b, outputs=("out1",)), {"out1": run(*base)["out1"]})


def test_copy_is_independent(base):
    g = Graph.load(*base)
    c = g.copy()
    c.layer("conv1").set_weight("bias", np.zeros(4))
    c.rename_blob("2", "x")
    assert "2" in g.blobs and not g.layer("conv1").weights["bias"].edited
    assert g.to_param_text() == BASE


# ------------------------------------------------------------------------------------- atomic writes
def test_never_overwrites_the_input_unless_asked(base, tmp_path):
    param, bin_ = base
    g = Graph.load(param, bin_)
    before = (param.read_bytes(), bin_.read_bytes())
    g.layer("conv1").set_weight("bias", np.zeros(4))
    with pytest.raises(NcnnpassError, match="refusing to overwrite"):
        g.save(param, bin_)
    with pytest.raises(NcnnpassError, match="refusing to overwrite"):
        g.save(tmp_path / "other.param", param)  # the input .param as the output .bin
    link = tmp_path / "alias.bin"
    os.link(bin_, link)
    with pytest.raises(NcnnpassError, match="refusing to overwrite"):
        g.save(tmp_path / "x.param", link)  # same file under another name
    assert (param.read_bytes(), bin_.read_bytes()) == before
    g.save(param, bin_, overwrite=True)  # the .bin is memory-mapped while it is replaced
    assert param.read_bytes() == before[0] and bin_.read_bytes() != before[1]
    g2 = Graph.load(param, bin_)
    np.testing.assert_array_equal(g2.layer("conv1").weight("bias"), np.zeros(4))
    np.testing.assert_array_equal(g2.layer("conv1").weight("weight"), g.layer("conv1").weight("weight"))


def test_failed_write_leaves_old_files_and_no_temporaries(base, tmp_path):
    g = Graph.load(*base)
    out_p, out_b = save(g, tmp_path, "out")
    old = (out_p.read_bytes(), out_b.read_bytes())
    g.layer("conv2").weights.pop("bias")  # the .bin cannot be written
    with pytest.raises(WeightError):
        g.save(out_p, out_b)
    assert (out_p.read_bytes(), out_b.read_bytes()) == old
    assert sorted(f.name for f in tmp_path.iterdir()) == ["base.bin", "base.param", "out.bin", "out.param"]
    with pytest.raises(NcnnpassError, match="does not exist"):
        Graph.load(*base).save(tmp_path / "no" / "x.param", tmp_path / "no" / "x.bin")
    with pytest.raises(NcnnpassError, match="different files"):
        Graph.load(*base).save(tmp_path / "same", tmp_path / "same")
