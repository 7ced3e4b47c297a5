"""Phone repair: MACs, the prefix search, and PP-OCRv3 rec on the emulated phone against onnxruntime."""

from __future__ import annotations

import time

import fixtures
import numpy as np
import pytest
from fixtures import require

from ncnnpass.ir import Graph, runtime
from ncnnpass.ir.runtime import JobResult, TargetPool
from ncnnpass.passes.engine.testing import fill_weights, model
from ncnnpass.passes.precision import fp16_mac_share, macs_per_layer, repair_for_phone, unsafe_edges
from ncnnpass.passes.precision.phone_repair import onnx_reference
from ncnnpass.passes.precision.search import abs_error, shortest_prefix

BODY = """
Input in0 0 1 in 0=20 1=10 2=3
Convolution c1 1 1 in a 0=8 1=3 3=2 4=1 5=1 6=216
ConvolutionDepthWise dw 1 1 a b 0=8 1=3 4=1 5=1 6=72 7=8
Pooling gap 1 1 b g 0=1 4=1
InnerProduct fc 1 1 g f 0=4 1=1 2=32
ReLU r 1 1 f out
"""


def test_macs_from_params_and_shapes() -> None:
    g = fill_weights(model(BODY), seed=0)
    macs = macs_per_layer(g, runtime.infer_shapes(g, (3, 10, 20)))
    # c1: stride 2 -> 8x5x10 output, 216 weights per output pixel; dw: 72 per pixel at 5x10; fc: 32
    assert macs == {"in0": 0, "c1": 216 * 50, "dw": 72 * 50, "gap": 0, "fc": 32, "r": 0}
    total = 216 * 50 + 72 * 50 + 32
    assert fp16_mac_share(macs, {"c1"}) == pytest.approx(1 - 216 * 50 / total)
    assert fp16_mac_share(macs, set()) == 1.0


def test_abs_error_flags_nonfinite() -> None:
    ref = [[np.ones(3)]]
    assert abs_error([{"o": np.array([1.0, 1.5, 1.0])}], ref, ["o"]) == 0.5
    assert abs_error([{"o": np.array([1.0, np.nan, 1.0])}], ref, ["o"]) == float("inf")


class _FakePool:
    """Error = 1 / (1 + number of masked layers): a monotone stand-in for the target."""

    workers = 2

    def __init__(self) -> None:
        self.calls = 0

    def run(self, jobs, progress=None):
        self.calls += 1
        out = []
        for job in jobs:
            k = sum(1 for ly in job.graph.layers if ly.featmask & 2)
            out.append(JobResult([{"out": np.array([1.0 / (1 + k)])} for _ in job.samples]))
        return out


@pytest.mark.parametrize("tolerance,expected", [(0.26, 3), (0.2, 4), (0.5, 1), (0.01, 5)])
def test_prefix_search_finds_the_shortest_passing_prefix(tolerance: float, expected: int) -> None:
    g = fill_weights(model(BODY), seed=0)
    order = ["r", "fc", "gap", "dw", "c1"]
    pool = _FakePool()
    k, probes = shortest_prefix(g, order, tolerance, [{"in": np.zeros((3, 10, 20), np.float32)}],
                                [[np.zeros(1)]], pool)
    assert k == expected
    assert pool.calls <= 3  # two probes per round: at most ceil(log3(5)) + 1 rounds
    assert all(p.error <= tolerance for p in probes if p.k >= k)


@pytest.fixture(scope="module")
def v3():
    from ncnnpass.ir.runtime.arm_env import ensure_arm_runtime

    require(lambda: ensure_arm_runtime(), "the emulated ARM runtime (qemu-user + aarch64 ncnn)")
    param, binf = require(lambda: fixtures.ppocrv3_rec_ncnn(), "PP-OCRv3 rec converted by pnnx")
    onnx = require(lambda: fixtures.ppocrv3_rec_onnx(), "PP-OCRv3 rec ONNX")
    return Graph.load(str(param), str(binf)), onnx


def _repair_and_rerun(graph: Graph, onnx, tol: float) -> object:
    """repair_for_phone against onnxruntime, then the written model rerun on the emulated phone on an input
    the search never saw; returns the result."""
    t0 = time.perf_counter()
    res = repair_for_phone(graph, (3, 48, 320), tolerance=tol, reference=onnx, verify_seeds=(0,),
                           heldout_seeds=(101,), progress=print)
    print(res.summary(), res.probes)
    assert res.reached and res.error_after <= tol and res.heldout_error <= tol
    assert res.fp32_floor < 1e-4
    assert unsafe_edges(res.graph) == []
    x = {graph.inputs[0]: np.random.default_rng(7).uniform(-1, 1, (3, 48, 320)).astype(np.float32)}
    ref = onnx_reference(onnx)(x)
    with TargetPool("arm", workers=1) as pool:
        from ncnnpass.ir.runtime import Job

        (r,) = pool.run([Job(res.graph, [x], list(res.graph.outputs))])
    assert r.ok, r.error
    err = abs_error(r.outputs, [ref], list(res.graph.outputs))
    print(f"fresh input: {err:.3g}; whole test {time.perf_counter() - t0:.0f} s")
    assert err <= 2 * tol  # an unseen input: same order as the verified error, no NaN
    return res


def test_ppocrv3_phone_repair_on_emulated_arm(v3) -> None:
    """The emulated Cortex-A76 error of PP-OCRv3 rec against onnxruntime, before and after the repair, and
    the written model rerun there on a fresh input. Tolerance 3e-3 keeps CI short (the 1e-3 search costs
    ~10 probes; its numbers are in docs/phone.md)."""
    graph, onnx = v3
    res = _repair_and_rerun(graph, onnx, 3e-3)
    assert res.error_before > 1e-2  # the phone's fp16 storage loses far more than x86 (~3e-4)
    assert res.fp16_mac_share >= 0.5 and 0 < len(res.layers_marked) < len(graph.layers)


def test_ppocrv4_phone_repair_on_emulated_arm() -> None:
    """PP-OCRv4 rec: 1e-1 on the phone as converted; at 5e-3 the search keeps a tail of the net fp32 (at 1e-3
    it needs every layer: the fp16 rounding of the input alone costs 1.2e-3, docs/phone.md)."""
    from ncnnpass.ir.runtime.arm_env import ensure_arm_runtime

    require(lambda: ensure_arm_runtime(), "the emulated ARM runtime (qemu-user + aarch64 ncnn)")
    param, binf = require(lambda: fixtures.ppocrv4_rec_ncnn(), "PP-OCRv4 rec converted by pnnx")
    onnx = require(lambda: fixtures.ppocrv4_rec_onnx(), "PP-OCRv4 rec ONNX")
    graph = Graph.load(str(param), str(binf))
    res = _repair_and_rerun(graph, onnx, 5e-3)
    assert res.error_before > 5e-2
    assert 0 < len(res.layers_marked) < len(graph.layers)


def test_cut_points_skip_mac_free_tails() -> None:
    from ncnnpass.passes.precision.search import cut_points

    macs = {"r": 0, "fc": 32, "gap": 0, "dw": 3600, "c1": 10800}
    assert cut_points(["r", "fc", "gap", "dw", "c1"], macs) == [0, 1, 3, 4, 5]
    g = fill_weights(model(BODY), seed=0)
    args = (g, ["r", "fc", "gap", "dw", "c1"], 0.34, [{"in": np.zeros((3, 10, 20), np.float32)}], [[np.zeros(1)]])
    assert shortest_prefix(*args, _FakePool())[0] == 2  # error 1/3 passes at 2 layers
    assert shortest_prefix(*args, _FakePool(), cuts=[0, 1, 3, 4, 5])[0] == 3  # but 2 is not a cut


OVERFLOW = """
Input in0 0 1 in 0=16 1=8 2=4
Convolution c1 1 1 in a 0=8 1=3 4=1 5=1 6=288
Convolution big 1 1 a b 0=8 1=1 5=1 6=64
BinaryOp down 1 1 b c 0=2 1=1 2=0.0001
Convolution c3 1 1 c out 0=8 1=1 5=1 6=64
"""


def test_fp16_overflow_is_located_and_repaired_on_emulated_arm() -> None:
    """A layer whose output exceeds fp16's 65504 (scaled down right after): NaN/Inf on the phone, found by the
    all-blob run and fixed by keeping it and its reader fp32; the reference is ncnn on x86 with fp16 off."""
    from ncnnpass.ir.runtime.arm_env import ensure_arm_runtime

    require(lambda: ensure_arm_runtime(), "the emulated ARM runtime (qemu-user + aarch64 ncnn)")
    g = fill_weights(model(OVERFLOW), seed=0, scale=0.5)
    big = g.layer("big")
    big.set_weight("weight", big.weight("weight") * 3e4)  # |b| ~ 1e5 > 65504
    res = repair_for_phone(g, (4, 8, 16), tolerance=1e-2, order_by="sensitivity", verify_seeds=(0,),
                           heldout_seeds=(1,), progress=print)
    assert res.error_before == float("inf")
    assert res.first_nonfinite == "big"
    assert {"big", "down"} <= set(res.layers_marked) and res.reached
    assert np.isfinite(res.error_after) and res.error_after <= 1e-2 and res.heldout_error <= 1e-2
    assert res.reference.startswith("ncnn on this machine")
