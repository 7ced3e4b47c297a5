"""Files ncnn loads that ncnnpass used to refuse: they load, warn, round-trip, and stay valid after edits.

Each small case is checked against the pip ncnn loader (it must accept the original and what ncnnpass
writes); the real-model case gives two Split layers of the real PP-OCRv3 pnnx file one name, as pnnx
does for the LSTM-neck recognizer, and runs inspect / run --pipeline repair on it in ncnn.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import ncnn
import numpy as np
import pytest
from fixtures import ppocrv3_rec_ncnn, require
from support.ncnn_check import param_text_accepted, run_files

from ncnnpass.ir import Graph, GraphError, Layer

H = "7767517\n"


def tokens(text: str) -> list[list[str]]:
    return [ln.split() for ln in text.splitlines() if ln.strip()]


def kinds(g: Graph) -> list[str]:
    return [w.kind for w in g.warnings()]


def test_shared_layer_names_load_warn_and_round_trip():
    text = H + "4 4\nInput in 0 1 in\nReLU r 1 1 in a\nReLU r 1 1 a b 0=0.5\nTanH r 1 1 b out\n"
    assert param_text_accepted(text)
    g = Graph.from_text(text)
    assert kinds(g) == ["duplicate-layer-name"] and "3 layers are named 'r'" in g.warnings()[0].message
    assert g.check() == [] and g.check(warnings=True) == g.warnings()
    assert tokens(g.to_param_text()) == tokens(text)
    assert g.layer("r").outputs == ("a",)  # the first, as ncnn's lookup by name
    new = g.add_layer("Sigmoid", None, ["out"], ["s"])
    assert new.name not in {"r", "in"} and len(g.duplicate_layer_names()["r"]) == 3
    g.remove(g.layer("r"))  # the first r goes; the name now finds the next one
    assert g.layer("r").outputs == ("b",) and len(g.duplicate_layer_names()["r"]) == 2
    g.layer("r").name = "r2"
    assert g.duplicate_layer_names() == {} and kinds(g) == []
    assert param_text_accepted(g.to_param_text())
    c = Graph.from_text(text).copy()
    assert tokens(c.to_param_text()) == tokens(text)
    # a rewrite that replaces a layer keeps its (shared) name; a brand-new name must still be unique
    c.replace(c.find(type="TanH")[0], Layer("Sigmoid", "r", ["b"], ["out"]))
    assert [ly.type for ly in c.find(name="r")] == ["ReLU"] and len(c.duplicate_layer_names()["r"]) == 3
    assert param_text_accepted(c.to_param_text())
    with pytest.raises(GraphError, match="already exists"):
        c.add_layer("AbsVal", "in", ["out"], ["o2"])
    assert c.unique_layer_name("r") != "r"


def test_two_splits_with_one_name_keep_it_and_new_splits_get_fresh_names(tmp_path: Path):
    text = (H + "7 9\nInput in 0 1 in\nSplit splitncnn_0 1 2 in a b\nReLU r1 1 1 a c\n"
            "Split splitncnn_0 1 2 c e f\nTanH t1 1 1 b d\nSigmoid s1 1 1 e out1\nBinaryOp add 2 1 f d out2\n")
    assert param_text_accepted(text)
    g = Graph.from_text(text)
    assert kinds(g) == ["duplicate-layer-name"] and [ly.type for ly in g].count("Split") == 0
    assert tokens(g.to_param_text()) == tokens(text)
    assert g.unique_layer_name("splitncnn_0") != "splitncnn_0"  # Split names count as taken
    g.add_layer("AbsVal", None, ["d"], ["out3"])  # blob d gets a second consumer: a new Split
    out = g.to_param_text()
    names = [t[1] for t in tokens(out)[2:] if t[0] == "Split"]
    assert names.count("splitncnn_0") == 2 and len(names) == 3 and len(set(names)) == 2, names
    assert param_text_accepted(out)


@pytest.mark.parametrize("name", ["1=2", "0=in", "-23300=1,2", "31=x", "a=b="])
def test_names_that_look_like_params(name: str, tmp_path: Path):
    text = H + f"3 3\nInput {name} 0 1 {name}\nReLU {name}x 1 1 {name} mid 0=0.5\nAbsVal abs 1 1 mid {name}o\n"
    assert param_text_accepted(text)
    g = Graph.from_text(text)
    assert g.inputs == [name] and g.outputs == [f"{name}o"]
    assert g.layer(f"{name}x").params[0] == 0.5
    assert tokens(g.to_param_text()) == tokens(text)
    p = tmp_path / "m.param"
    p.write_text(text)
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(1, 3, 4)
    got = run_files(p, None, {name: x}, [f"{name}o"])[f"{name}o"]
    np.testing.assert_array_equal(got, np.abs(np.where(x > 0, x, 0.5 * x)))


def test_header_counts_ncnn_tolerates():
    # fewer layers than lines: ncnn reads the announced layers and ignores the rest, even garbage
    text = H + "2 9\nInput in 0 1 in\nReLU r 1 1 in out\nnot a layer \xff line\nReLU r2 1 1 out o2\n"
    assert param_text_accepted(text)
    g = Graph.from_text(text)
    assert [ly.name for ly in g] == ["in", "r"]
    assert sorted(kinds(g)) == ["blob-count", "ignored-lines"]
    msgs = " ".join(w.message for w in g.warnings())
    assert "2 line(s) after the 2 layers" in msgs and ":5: " in msgs and "header says 9 blobs" in msgs
    out = g.to_param_text()
    assert tokens(out)[1] == ["2", "2"] and param_text_accepted(out)
    for bad in ("2 1", "3 2", "1 1000001"):  # ncnn refuses these too
        t = H + bad + "\nInput in 0 1 in\nReLU r 1 1 in out\n"
        assert not param_text_accepted(t)
        with pytest.raises(Exception, match="header says"):
            Graph.from_text(t)


def test_unproduced_blob_is_an_input_with_a_warning(tmp_path: Path):
    text = H + "2 3\nInput in 0 1 in\nBinaryOp add 2 1 in extra out 0=0\n"
    assert param_text_accepted(text)
    g = Graph.from_text(text)
    assert g.inputs == ["in", "extra"] and g.check() == [] and kinds(g) == ["unproduced-blob"]
    assert tokens(g.to_param_text()) == tokens(text)
    p = tmp_path / "m.param"
    p.write_text(text)
    a, b = np.ones((1, 2, 2), np.float32), np.full((1, 2, 2), 2, np.float32)
    np.testing.assert_array_equal(run_files(p, None, {"in": a, "extra": b}, ["out"])["out"], a + b)


def test_oddities_ncnn_refuses_are_warnings_here():
    bom = "\ufeff" + H + "1 1\nInput in 0 1 in\n"
    assert not param_text_accepted(bom)
    assert kinds(Graph.from_text(bom)) == ["byte-order-mark"]
    two = H + "3 3\nInput a 0 1 a\nInput b 0 1 b\nReLU r 2 1 a b out\n"
    assert not param_text_accepted(two)
    assert kinds(Graph.from_text(two)) == ["one-blob-layer"]
    for conv, ncnn_ok in (("0=1 1=1 6=1", False), ("0=1 1=1 6=1 19=1", True)):  # 19=1: weights as inputs
        t = H + f"3 3\nInput a 0 1 a\nInput b 0 1 b\nConvolution c 2 1 a b out {conv}\n"
        assert param_text_accepted(t) == ncnn_ok
        assert kinds(Graph.from_text(t)) == ([] if ncnn_ok else ["one-blob-layer"])


def test_inspect_prints_warnings(tmp_path: Path):
    p = tmp_path / "m.param"
    p.write_text(H + "3 4\nInput in 0 1 in\nReLU r 1 1 in a\nReLU r 1 1 a out\n")
    r = subprocess.run([sys.executable, "-m", "ncnnpass.cli.main", "inspect", str(p)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "warnings (2):" in r.stdout and "duplicate-layer-name" in r.stdout and "blob-count" in r.stdout
    r = subprocess.run([sys.executable, "-m", "ncnnpass.cli.main", "inspect", "--json", str(p)], capture_output=True,
                       text=True)
    rep = json.loads(r.stdout)
    assert {w["kind"] for w in rep["warnings"]} == {"duplicate-layer-name", "blob-count"} and rep["problems"] == []


# ------------------------------------------------------------------------------------- real model
def _shared_split_names(param: Path, out: Path) -> str:
    """The real file with its first two Split layers both named like the first (as pnnx names the LSTM
    recognizer's Splits)."""
    text = param.read_text()
    names = re.findall(r"^Split\s+(\S+)", text, flags=re.M)
    assert len(names) >= 2
    text = re.sub(rf"^(Split\s+){re.escape(names[1])}(\s)", rf"\g<1>{names[0]}\g<2>", text, count=1, flags=re.M)
    out.write_text(text)
    return names[0]


@pytest.mark.real
@pytest.mark.slow
def test_real_model_with_two_splits_of_one_name(tmp_path: Path):
    param, bin_ = require(ppocrv3_rec_ncnn, "PP-OCRv3 rec converted by pnnx")
    p = tmp_path / "dup.param"
    name = _shared_split_names(Path(param), p)
    assert param_text_accepted(p.read_text())
    cli = [sys.executable, "-m", "ncnnpass.cli.main"]
    r = subprocess.run([*cli, "inspect", "--json", str(p), str(bin_)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["problems"] == [] and [w["kind"] for w in rep["warnings"]] == ["duplicate-layer-name"]
    assert name in rep["warnings"][0]["message"]
    g = Graph.load(p, bin_)
    assert tokens(g.to_param_text()) == tokens(p.read_text())  # unedited: token-identical
    assert g.to_bin_bytes() == Path(bin_).read_bytes()  # byte-identical
    x = np.random.default_rng(0).uniform(-1, 1, (3, 48, 320)).astype(np.float32)
    ref = run_files(param, bin_, {"in0": x}, ["out0"])["out0"]
    same = run_files(p, bin_, {"in0": x}, ["out0"])["out0"]
    assert same.tobytes() == ref.tobytes()  # the name changes nothing in ncnn
    rt_p, rt_b = tmp_path / "rt.param", tmp_path / "rt.bin"
    g.save(rt_p, rt_b)
    assert rt_b.read_bytes() == Path(bin_).read_bytes()
    assert run_files(rt_p, rt_b, {"in0": x}, ["out0"])["out0"].tobytes() == ref.tobytes()  # bit-identical
    fixed_p, fixed_b = tmp_path / "fixed.param", tmp_path / "fixed.bin"
    r = subprocess.run([*cli, "run", str(p), str(bin_), "-o", str(fixed_p), str(fixed_b), "--pipeline", "repair",
                        "--verify", "--shape", "3,48,320"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verified" in r.stdout
    fixed = Graph.load(fixed_p, fixed_b)
    names = [ly.name for ly in fixed.layers]
    assert len(names) == len(set(names))  # the rewrite's new layers have names of their own
    text = fixed_p.read_text()
    assert param_text_accepted(text)
    got = run_files(fixed_p, fixed_b, {"in0": x}, ["out0"], preset="fp32")["out0"]
    want = run_files(param, bin_, {"in0": x}, ["out0"], preset="fp32")["out0"]
    assert np.abs(got - want).max() < 1e-4
    assert ncnn.Net().load_param(str(fixed_p)) == 0
