"""PP-OCRv3 rec converted by pnnx (fp16=0 and fp16=1): lossless round trip and edits that ncnn runs.

Outputs come from the ncnn wheel loading the files (light mode on, one thread) and are compared bit
for bit where nothing should change, or against the exact expected effect of the edit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.ncnn_check import run_files

from ncnnpass.ir import Graph, Layer
from ncnnpass.ir.parser import parse_param

pytestmark = pytest.mark.real

X = np.random.default_rng(3).uniform(-1, 1, (3, 48, 320)).astype(np.float32)
PRESETS = ("default", "fp32")


def run(param: Path, bin_: Path, inp: str = "in0", out: str = "out0", preset: str = "default",
        extra: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    return run_files(param, bin_, {inp: X}, (out, *extra), preset)


@pytest.fixture(scope="module")
def reference(ppocrv3_rec_ncnn):
    """ncnn's outputs on the converter's own files, per option preset."""
    param, bin_ = ppocrv3_rec_ncnn
    return {preset: run(param, bin_, preset=preset)["out0"] for preset in PRESETS}


def save(g: Graph, d: Path, stem: str) -> tuple[Path, Path]:
    p, b = d / f"{stem}.param", d / f"{stem}.bin"
    g.save(p, b)
    return p, b


def test_round_trip_is_lossless(ppocrv3_rec_ncnn, reference, tmp_path):
    param, bin_ = ppocrv3_rec_ncnn
    g = Graph.load(param, bin_)
    assert len(g.splits) == 7 and g.count_by_type("Split") == 0
    p, b = save(g, tmp_path, "rt")
    assert b.read_bytes() == Path(bin_).read_bytes()
    assert p.read_text() == Path(param).read_text()  # pnnx's own layout, Split names included
    for preset in PRESETS:
        y = run(p, b, preset=preset)["out0"]
        assert y.shape == (40, 6625) and np.all(np.isfinite(y))
        assert y.tobytes() == reference[preset].tobytes(), preset
    g2 = Graph.load(p, b)
    p2, b2 = save(g2, tmp_path, "rt2")
    assert p2.read_bytes() == p.read_bytes() and b2.read_bytes() == b.read_bytes()


def test_weights_decode_and_storage(ppocrv3_rec_ncnn, request):
    param, bin_ = ppocrv3_rec_ncnn
    fp16 = "fp16" in request.node.callspec.id
    g = Graph.load(param, bin_)
    storages = {wt.storage for ly in g for wt in ly.weights.values() if wt.tagged}
    assert storages == ({"fp16"} if fp16 else {"fp32"})
    assert all(wt.storage == "raw" for ly in g for wt in ly.weights.values() if not wt.tagged)
    total = sum(wt.nbytes for ly in g for wt in ly.weights.values())
    assert total == Path(bin_).stat().st_size
    conv = g.find("Convolution")[0]
    w = conv.weight("weight")
    assert w.dtype == np.float32 and w.size == conv.get("weight_data_size") and np.all(np.isfinite(w))
    if fp16:  # the fp16 file stores the fp32 file's weights rounded to half precision
        from fixtures import ppocrv3_rec_ncnn as fx

        g32 = Graph.load(*fx(False))
        w32 = g32.layer(conv.name).weight("weight")
        assert np.all(np.abs(w - w32) <= np.abs(w32) * 2.0**-10 + 2.0**-24)


def test_replace_softmax_by_noop_gives_the_logits(ppocrv3_rec_ncnn, reference, tmp_path):
    g = Graph.load(*ppocrv3_rec_ncnn)
    (sm,) = g.find("Softmax")
    g.replace(sm, Layer("Noop", "logits", sm.inputs, sm.outputs))
    p, b = save(g, tmp_path, "e")
    logits = run(p, b, preset="fp32")["out0"].astype(np.float64)
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(1, keepdims=True), reference["fp32"], rtol=1e-4, atol=1e-6)
    assert not np.allclose(logits, reference["fp32"])


def test_rename_blobs(ppocrv3_rec_ncnn, reference, tmp_path):
    g = Graph.load(*ppocrv3_rec_ncnn)
    g.rename_blob("in0", "image")
    g.rename_blob("out0", "probs")
    g.rename_blob("48", "se_input")  # the source of splitncnn_0
    p, b = save(g, tmp_path, "e")
    text = p.read_text()
    assert "Split                    splitncnn_0              1 2 se_input 49 50" in text
    for preset in PRESETS:
        y = run(p, b, inp="image", out="probs", preset=preset)["probs"]
        assert y.tobytes() == reference[preset].tobytes()


def test_change_a_weight(ppocrv3_rec_ncnn, tmp_path):
    g = Graph.load(*ppocrv3_rec_ncnn)
    gemm = g.layer("gemm_4")  # the classifier: Gemm with constant B (N x K) and C (1 x N)
    n = gemm.get(8, 0)
    storage = gemm.weights["B"].storage
    gemm.set_weight("B", np.zeros(gemm.weights["B"].count))
    c = np.zeros(n)
    c[17] = 10.0
    gemm.set_weight("C", c)
    assert gemm.weights["B"].storage == storage  # edits keep the stored type
    p, b = save(g, tmp_path, "e")
    y = run(p, b, preset="fp32")["out0"]
    hot = np.exp(10.0) / (np.exp(10.0) + n - 1)  # every row: logits = C; rtol 2e-4 for ncnn's SIMD exp
    np.testing.assert_allclose(y[:, 17], hot, rtol=2e-4)
    np.testing.assert_allclose(np.delete(y, 17, axis=1), (1 - hot) / (n - 1), rtol=2e-4)


def test_new_consumers_get_splits_and_change_nothing_else(ppocrv3_rec_ncnn, reference, tmp_path):
    g = Graph.load(*ppocrv3_rec_ncnn)
    assert g.find(name="splitncnn_0") == []  # absorbed
    g.add_layer("Sigmoid", "tap_a", ["48"], ["tap_a"])  # a third consumer of splitncnn_0's source
    g.add_layer("Sigmoid", "tap_b", ["112"], ["tap_b"])  # a second consumer of a plain blob
    p, b = save(g, tmp_path, "e")
    pf = parse_param(p.read_text())
    splits = {ly.name: (ly.inputs, ly.outputs) for ly in pf.layers if ly.type == "Split"}
    for k in range(1, 7):  # untouched Splits keep pnnx's names
        assert f"splitncnn_{k}" in splits
    assert (["48"], ["48_splitncnn_0", "48_splitncnn_1", "48_splitncnn_2"]) in splits.values()
    assert (["112"], ["112_splitncnn_0", "112_splitncnn_1"]) in splits.values()
    consumers: dict[str, int] = {}
    for ly in pf.layers:
        for name in ly.inputs:
            consumers[name] = consumers.get(name, 0) + 1
    assert max(consumers.values()) == 1
    ys = run(p, b, preset="fp32", extra=("tap_a", "tap_b"))
    assert ys["out0"].tobytes() == reference["fp32"].tobytes()
    orig = run(*ppocrv3_rec_ncnn, preset="fp32", extra=("48", "112"))
    np.testing.assert_allclose(ys["tap_a"], 1 / (1 + np.exp(-orig["48"].astype(np.float64))), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ys["tap_b"], 1 / (1 + np.exp(-orig["112"].astype(np.float64))), rtol=1e-5, atol=1e-6)


def test_copy_edit_keeps_the_original_untouched(ppocrv3_rec_ncnn, tmp_path):
    param, bin_ = ppocrv3_rec_ncnn
    g = Graph.load(param, bin_)
    c = g.copy()
    c.find("Convolution")[0].set_weight("bias", np.zeros(16))
    c.remove(c.find("Softmax")[0])
    p, b = save(g, tmp_path, "orig")
    assert b.read_bytes() == Path(bin_).read_bytes() and p.read_text() == Path(param).read_text()
