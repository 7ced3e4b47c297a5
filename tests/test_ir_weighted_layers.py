"""Every weighted layer type in ``WEIGHT_TABLE``, built through the Graph API, written, and run by ncnn.

For each case and storage (fp32, fp16 for tagged slots, a few bf16/int8) the test
1. writes ``a.param``/``a.bin`` with ``Graph.save`` and loads them with ``ncnn.Net().load_param/load_model``;
2. checks that ncnn consumes every byte we wrote (dropping the last 4 bytes makes ``load_model`` fail);
3. re-reads the files with ``Graph.load``: same weights (bit for bit), same storage;
4. saves that again (``b.*``): ``.bin`` byte-identical, ``.param`` text identical, ncnn outputs bit-identical;
5. compares ncnn's output to a float64 numpy reference computed from the re-read weights:
   ``fp32`` options (no fp16/bf16 storage): ``|y - ref| <= ATOL + RTOL*|ref|`` with ATOL=RTOL=2e-4
   (int8 cases: exactly representable dyadic values, same tolerance); ncnn's default options: 3e-2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from support import refs
from support.ncnn_check import model_file_accepted, run_files

from ncnnpass.ir import Graph, runtime
from ncnnpass.ir.weights import WEIGHT_TABLE

ATOL = RTOL = 2e-4  # fp32 options
LOOSE = 3e-2  # ncnn default options (fp16 storage of some weights/activations on x86)


@dataclass
class Built:
    graph: Graph
    feeds: dict[str, np.ndarray]
    out: str
    ref: Callable[[Graph], np.ndarray]  # reference from the graph's (re-read) weights
    exact_int: bool = False  # integer output (int8): compare with |diff| <= 1 under every option set
    truncation_check: bool = True  # off where ncnn crashes on a short read (int8 scales read without a check)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def w(g: Graph, layer: str, name: str) -> np.ndarray:
    return g.layer(layer).weight(name).astype(np.float64)


def inp(g: Graph, name: str, shape: tuple[int, ...]) -> None:
    keys = {1: (0,), 2: (0, 1), 3: (0, 1, 2), 4: (0, 1, 11, 2)}[len(shape)]
    g.add_layer("Input", name, [], [name], params=dict(zip(keys, reversed(shape), strict=True)))


def one(type_: str, x_shape, params, weights, storage, ref, *, extra_inputs=(), seed=0, x=None, **kw) -> Built:
    """Input ``in`` (plus extra inputs) -> one layer ``L`` -> ``out``."""
    g = Graph()
    inp(g, "in", x_shape)
    names = ["in"]
    feeds = {"in": x if x is not None else rng(seed + 100).uniform(-1, 1, x_shape).astype(np.float32)}
    for name, arr in extra_inputs:
        inp(g, name, arr.shape)
        names.append(name)
        feeds[name] = arr
    g.add_layer(type_, "L", names, ["out"], params=params, weights=weights, storage=storage)
    return Built(g, feeds, "out", lambda g2: ref(g2, feeds), **kw)


# --------------------------------------------------------------------------------------- the cases
def conv2d(st):
    r = rng(1)
    p = {0: 4, 1: 3, 11: 2, 4: 1, 15: 1, 14: 0, 16: 1, 5: 1, 6: 4 * 3 * 2 * 3}
    ws = {"weight": r.normal(size=72), "bias": r.normal(size=4)}
    return one("Convolution", (3, 7, 8), p, ws, st, lambda g, f: refs.conv_nd(
        f["in"], w(g, "L", "weight"), w(g, "L", "bias"), (2, 3), pads=((0, 1), (1, 1))))


def conv2d_strided(st):
    r = rng(2)
    p = {0: 2, 1: 3, 2: 2, 3: 2, 13: 1, 6: 2 * 3 * 9}
    return one("Convolution", (3, 9, 9), p, {"weight": r.normal(size=54)}, st, lambda g, f: refs.conv_nd(
        f["in"], w(g, "L", "weight"), None, (3, 3), stride=(1, 2), dilation=(2, 2)))


def convdw(st):
    r = rng(3)
    p = {0: 4, 1: 3, 4: 1, 5: 1, 6: 36, 7: 4}
    ws = {"weight": r.normal(size=36), "bias": r.normal(size=4)}
    return one("ConvolutionDepthWise", (4, 6, 6), p, ws, st, lambda g, f: refs.conv_nd(
        f["in"], w(g, "L", "weight"), w(g, "L", "bias"), (3, 3), pads=((1, 1), (1, 1)), groups=4))


def convdw_grouped(st):
    r = rng(4)
    p = {0: 4, 1: 3, 5: 1, 6: 72, 7: 2}
    ws = {"weight": r.normal(size=72), "bias": r.normal(size=4)}
    return one("ConvolutionDepthWise", (4, 6, 6), p, ws, st, lambda g, f: refs.conv_nd(
        f["in"], w(g, "L", "weight"), w(g, "L", "bias"), (3, 3), groups=2))


def conv1d(st):
    r = rng(5)
    p = {0: 4, 1: 3, 4: 1, 5: 1, 6: 36}
    ws = {"weight": r.normal(size=36), "bias": r.normal(size=4)}
    return one("Convolution1D", (3, 10), p, ws, st, lambda g, f: refs.conv_nd(
        f["in"], w(g, "L", "weight"), w(g, "L", "bias"), (3,), pads=((1, 1),)))


def convdw1d(st):
    r = rng(6)
    p = {0: 4, 1: 3, 5: 1, 6: 12, 7: 4}
    ws = {"weight": r.normal(size=12), "bias": r.normal(size=4)}
    return one("ConvolutionDepthWise1D", (4, 10), p, ws, st, lambda g, f: refs.conv_nd(
        f["in"], w(g, "L", "weight"), w(g, "L", "bias"), (3,), groups=4))


def conv3d(st):
    r = rng(7)
    p = {0: 3, 1: 3, 11: 2, 21: 2, 5: 1, 6: 3 * 2 * 2 * 2 * 3}
    ws = {"weight": r.normal(size=72), "bias": r.normal(size=3)}
    return one("Convolution3D", (2, 4, 5, 5), p, ws, st, lambda g, f: refs.conv_nd(
        f["in"], w(g, "L", "weight"), w(g, "L", "bias"), (2, 2, 3)))


def convdw3d(st):
    r = rng(8)
    p = {0: 3, 1: 2, 5: 1, 6: 24, 7: 3}
    ws = {"weight": r.normal(size=24), "bias": r.normal(size=3)}
    return one("ConvolutionDepthWise3D", (3, 4, 4, 4), p, ws, st, lambda g, f: refs.conv_nd(
        f["in"], w(g, "L", "weight"), w(g, "L", "bias"), (2, 2, 2), groups=3))


def deconv(st):
    r = rng(9)
    p = {0: 2, 1: 3, 11: 2, 3: 2, 4: 1, 5: 1, 6: 36}
    ws = {"weight": r.normal(size=36), "bias": r.normal(size=2)}
    return one("Deconvolution", (3, 4, 5), p, ws, st, lambda g, f: refs.deconv_nd(
        f["in"], w(g, "L", "weight"), w(g, "L", "bias"), (2, 3), stride=(2, 2), pads=((1, 1), (1, 1))))


def deconvdw(st):
    r = rng(10)
    p = {0: 4, 1: 3, 3: 2, 5: 1, 6: 36, 7: 4}
    ws = {"weight": r.normal(size=36), "bias": r.normal(size=4)}
    return one("DeconvolutionDepthWise", (4, 3, 3), p, ws, st, lambda g, f: refs.deconv_nd(
        f["in"], w(g, "L", "weight"), w(g, "L", "bias"), (3, 3), stride=(2, 2), groups=4))


def deconv1d(st):
    r = rng(11)
    p = {0: 2, 1: 3, 3: 2, 5: 1, 6: 18}
    ws = {"weight": r.normal(size=18), "bias": r.normal(size=2)}
    return one("Deconvolution1D", (3, 5), p, ws, st, lambda g, f: refs.deconv_nd(
        f["in"], w(g, "L", "weight"), w(g, "L", "bias"), (3,), stride=(2,)))


def deconvdw1d(st):
    r = rng(12)
    p = {0: 3, 1: 2, 5: 1, 6: 6, 7: 3}
    ws = {"weight": r.normal(size=6), "bias": r.normal(size=3)}
    return one("DeconvolutionDepthWise1D", (3, 5), p, ws, st, lambda g, f: refs.deconv_nd(
        f["in"], w(g, "L", "weight"), w(g, "L", "bias"), (2,), groups=3))


def deconv3d(st):
    r = rng(13)
    p = {0: 2, 1: 2, 5: 1, 6: 32}
    ws = {"weight": r.normal(size=32), "bias": r.normal(size=2)}
    return one("Deconvolution3D", (2, 2, 3, 3), p, ws, st, lambda g, f: refs.deconv_nd(
        f["in"], w(g, "L", "weight"), w(g, "L", "bias"), (2, 2, 2)))


def deconvdw3d(st):
    r = rng(14)
    p = {0: 2, 1: 2, 5: 1, 6: 16, 7: 2}
    ws = {"weight": r.normal(size=16), "bias": r.normal(size=2)}
    return one("DeconvolutionDepthWise3D", (2, 2, 3, 3), p, ws, st, lambda g, f: refs.deconv_nd(
        f["in"], w(g, "L", "weight"), w(g, "L", "bias"), (2, 2, 2), groups=2))


def deformable(st):
    r = rng(15)
    p = {0: 4, 1: 3, 4: 1, 5: 1, 6: 108}
    ws = {"weight": r.normal(size=108), "bias": r.normal(size=4)}
    offset = np.zeros((18, 5, 5), np.float32)  # zero offsets: a plain convolution
    return one("DeformableConv2D", (3, 5, 5), p, ws, st, lambda g, f: refs.conv_nd(
        f["in"], w(g, "L", "weight"), w(g, "L", "bias"), (3, 3), pads=((1, 1), (1, 1))),
        extra_inputs=[("offset", offset)])


def innerproduct(st):
    r = rng(16)
    p = {0: 5, 1: 1, 2: 240}
    ws = {"weight": r.normal(size=240) * 0.2, "bias": r.normal(size=5)}
    return one("InnerProduct", (3, 4, 4), p, ws, st, lambda g, f: refs.innerproduct(
        f["in"], w(g, "L", "weight"), w(g, "L", "bias")))


def batchnorm(st):
    r = rng(17)
    ws = {"slope": r.normal(size=4), "mean": r.normal(size=4), "var": r.uniform(0.5, 2, 4), "bias": r.normal(size=4)}
    return one("BatchNorm", (4, 3, 5), {0: 4, 1: 1e-3}, ws, st, lambda g, f: refs.batchnorm(
        f["in"], *(w(g, "L", n) for n in ("slope", "mean", "var", "bias")), 1e-3))


def scale(st):
    r = rng(18)
    return one("Scale", (4, 3, 5), {0: 4, 1: 1}, {"scale": r.normal(size=4), "bias": r.normal(size=4)}, st,
               lambda g, f: f["in"] * refs.per_channel(w(g, "L", "scale"), 3) + refs.per_channel(w(g, "L", "bias"), 3))


def bias(st):
    return one("Bias", (4, 3, 5), {0: 4}, {"bias": rng(19).normal(size=4)}, st,
               lambda g, f: f["in"] + refs.per_channel(w(g, "L", "bias"), 3))


def prelu(st):
    return one("PReLU", (4, 3, 5), {0: 4}, {"slope": rng(20).normal(size=4)}, st,
               lambda g, f: np.where(f["in"] > 0, f["in"], f["in"] * refs.per_channel(w(g, "L", "slope"), 3)))


def embed(st):
    r = rng(21)
    ids = np.array([0, 6, 3, 3, 1, 5], np.int32)
    p = {0: 5, 1: 7, 2: 1, 3: 35}
    return one("Embed", (6,), p, {"weight": r.normal(size=35), "bias": r.normal(size=5)}, st,
               lambda g, f: w(g, "L", "weight").reshape(7, 5)[ids] + w(g, "L", "bias"), x=ids)


def _memorydata(st, params, shape, seed):
    g = Graph()
    inp(g, "in", shape)
    data = rng(seed).normal(size=int(np.prod(shape)))
    g.add_layer("MemoryData", "md", [], ["md"], params=params, weights={"data": data}, storage=st)
    g.add_layer("BinaryOp", "add", ["in", "md"], ["out"], params={0: 0})
    x = rng(seed + 1).uniform(-1, 1, shape).astype(np.float32)
    return Built(g, {"in": x}, "out", lambda g2: x + w(g2, "md", "data").reshape(shape))


def memorydata(st):
    return _memorydata(st, {0: 4, 1: 3, 2: 2}, (2, 3, 4), 22)


def memorydata_tagged(st):  # 21=0: read as a tagged array, so fp16 is allowed
    return _memorydata(st, {0: 7, 21: 0}, (7,), 23)


def memorydata_4d(st):
    return _memorydata(st, {0: 3, 1: 2, 11: 2, 2: 2}, (2, 2, 2, 3), 24)


def layernorm(st):
    r = rng(25)
    return one("LayerNorm", (3, 6), {0: 6, 1: 1e-5}, {"gamma": r.normal(size=6), "beta": r.normal(size=6)}, st,
               lambda g, f: refs.layernorm_rows(f["in"], w(g, "L", "gamma"), w(g, "L", "beta"), 1e-5))


def groupnorm(st):
    r = rng(26)
    return one("GroupNorm", (4, 3, 3), {0: 2, 1: 4, 2: 1e-5}, {"gamma": r.normal(size=4), "beta": r.normal(size=4)},
               st, lambda g, f: refs.groupnorm(f["in"], 2, w(g, "L", "gamma"), w(g, "L", "beta"), 1e-5))


def instancenorm(st):
    r = rng(27)
    return one("InstanceNorm", (3, 4, 4), {0: 3, 1: 1e-5}, {"gamma": r.normal(size=3), "beta": r.normal(size=3)},
               st, lambda g, f: refs.instancenorm(f["in"], w(g, "L", "gamma"), w(g, "L", "beta"), 1e-5))


def normalize(st):
    p = {0: 1, 1: 0, 2: 1e-6, 3: 3, 4: 1, 9: 0}
    return one("Normalize", (3, 4, 4), p, {"scale": rng(28).normal(size=3)}, st,
               lambda g, f: refs.normalize_all(f["in"], w(g, "L", "scale"), 1e-6))


def rmsnorm(st):
    return one("RMSNorm", (3, 6), {0: 6, 1: 1e-5}, {"gamma": rng(29).normal(size=6)}, st,
               lambda g, f: refs.rmsnorm_rows(f["in"], w(g, "L", "gamma"), 1e-5))


def _rec(names, g):
    return [w(g, "L", n) for n in names]


def rnn(st):
    r = rng(30)
    ws = {"weight_xc": r.normal(size=12) * 0.5, "bias_c": r.normal(size=3) * 0.5, "weight_hc": r.normal(size=9) * 0.5}
    return one("RNN", (5, 4), {0: 3, 1: 12, 2: 1}, ws, st, lambda g, f: refs.rnn(
        f["in"], *_rec(("weight_xc", "bias_c", "weight_hc"), g), 3, direction=1))


def lstm(st):
    r = rng(31)
    ws = {"weight_xc": r.normal(size=48) * 0.5, "bias_c": r.normal(size=12) * 0.5,
          "weight_hc": r.normal(size=36) * 0.5}
    return one("LSTM", (5, 4), {0: 3, 1: 48}, ws, st, lambda g, f: refs.lstm(
        f["in"], *_rec(("weight_xc", "bias_c", "weight_hc"), g), 3))


def lstm_proj_bidir(st):  # hidden_size != num_output adds weight_hr; direction 2 doubles everything
    r = rng(32)
    ws = {"weight_xc": r.normal(size=160) * 0.5, "bias_c": r.normal(size=40) * 0.5,
          "weight_hc": r.normal(size=120) * 0.5, "weight_hr": r.normal(size=30) * 0.5}
    return one("LSTM", (5, 4), {0: 3, 1: 160, 2: 2, 3: 5}, ws, st, lambda g, f: refs.lstm(
        f["in"], *_rec(("weight_xc", "bias_c", "weight_hc"), g), 3, hidden_size=5,
        weight_hr=w(g, "L", "weight_hr"), direction=2))


def gru(st):
    r = rng(33)
    ws = {"weight_xc": r.normal(size=72) * 0.5, "bias_c": r.normal(size=24) * 0.5,
          "weight_hc": r.normal(size=54) * 0.5}
    return one("GRU", (5, 4), {0: 3, 1: 72, 2: 2}, ws, st, lambda g, f: refs.gru(
        f["in"], *_rec(("weight_xc", "bias_c", "weight_hc"), g), 3, direction=2))


def mha(st):
    r = rng(34)
    e, qdim, kdim, vdim = 8, 6, 5, 7
    names = ("q_weight", "q_bias", "k_weight", "k_bias", "v_weight", "v_bias", "out_weight", "out_bias")
    sizes = (e * qdim, e, e * kdim, e, e * vdim, e, qdim * e, qdim)
    ws = {n: r.normal(size=s) * 0.4 for n, s in zip(names, sizes, strict=True)}
    k = r.uniform(-1, 1, (5, kdim)).astype(np.float32)
    v = r.uniform(-1, 1, (5, vdim)).astype(np.float32)
    return one("MultiHeadAttention", (4, qdim), {0: e, 1: 2, 2: e * qdim, 3: kdim, 4: vdim}, ws, st,
               lambda g, f: refs.mha(f["in"], f["k"], f["v"], e, 2, *_rec(names, g)),
               extra_inputs=[("k", k), ("v", v)])


def gemm_const_b_c(st):
    r = rng(35)
    p = {3: 1, 5: 1, 6: 1, 7: 3, 8: 5, 9: 4, 10: 4}  # A input (3x4), B^T constant (5x4), C constant 1xN
    return one("Gemm", (3, 4), p, {"B": r.normal(size=20), "C": r.normal(size=5)}, st,
               lambda g, f: f["in"] @ w(g, "L", "B").reshape(5, 4).T + w(g, "L", "C"))


def gemm_const_a(st):
    r = rng(36)
    p = {4: 1, 7: 3, 9: 4, 6: 1, 10: 3, 8: 5}  # A constant (3x4), B input (4x5), C constant MxN
    return one("Gemm", (4, 5), p, {"A": r.normal(size=12), "C": r.normal(size=15)}, st,
               lambda g, f: w(g, "L", "A").reshape(3, 4) @ f["in"] + w(g, "L", "C").reshape(3, 5))


def quantize(st):
    x = (rng(37).uniform(-1, 1, (3, 4, 4)) * 1.3).astype(np.float32)
    return one("Quantize", (3, 4, 4), {0: 3}, {"scale": np.array([40.0, 90.0, 150.0])}, st,
               lambda g, f: refs.float2int8(f["in"] * refs.per_channel(w(g, "L", "scale"), 3)), x=x, exact_int=True)


def dequantize(st):
    x = rng(38).integers(-5000, 5000, (3, 4, 4)).astype(np.int32)
    ws = {"scale": np.array([0.01, 0.02, 0.005]), "bias": np.array([0.5, -1.0, 2.0])}
    return one("Dequantize", (3, 4, 4), {0: 3, 1: 3}, ws, st, lambda g, f: f["in"] * refs.per_channel(
        w(g, "L", "scale"), 3) + refs.per_channel(w(g, "L", "bias"), 3), x=x)


def requantize(st):
    x = rng(39).integers(-3000, 3000, (3, 4, 4)).astype(np.int32)
    ws = {"scale_in": np.array([0.01, 0.02, 0.03]), "scale_out": np.array([1.5]), "bias": np.array([0.25, -0.5, 1.0])}
    return one("Requantize", (3, 4, 4), {0: 3, 1: 1, 2: 3}, ws, st, lambda g, f: refs.float2int8(
        (f["in"] * refs.per_channel(w(g, "L", "scale_in"), 3) + refs.per_channel(w(g, "L", "bias"), 3))
        * w(g, "L", "scale_out")[0]), x=x, exact_int=True)


def padding(st):
    pads = np.array([7.0, -3.0, 0.5])

    def ref(g, f):
        x = f["in"]
        out = np.empty((3, 4 + 3, 4 + 1))
        for c in range(3):
            out[c] = np.pad(x[c], ((1, 2), (1, 0)), constant_values=w(g, "L", "per_channel_pad")[c])
        return out

    # ncnn's Padding ignores a failed read of its per-channel values: no truncation check
    return one("Padding", (3, 4, 4), {0: 1, 1: 2, 2: 1, 3: 0, 6: 3}, {"per_channel_pad": pads}, st, ref,
               truncation_check=False)


# int8 layers: weights q * 2^-k (|q| <= 127), inputs m * 2^-j: ncnn's int8 quantization is then exact
def _dyadic(r, n, scale_pow):
    return r.integers(-127, 128, n) * 2.0 ** -scale_pow


def _int8_input(shape, seed, pow_):
    return (rng(seed).integers(-127, 128, shape) * 2.0 ** -pow_).astype(np.float32)


def _int8_weights(st, r, n, cout, pow_):
    q = r.integers(-127, 128, n)
    if st == "int8":
        return q.astype(np.int8), np.full(cout, 2.0 ** pow_)
    return q * 2.0 ** -pow_, np.full(cout, 2.0 ** pow_)


def conv_int8(st):
    r = rng(40)
    wt, ws_ = _int8_weights(st, r, 4 * 3 * 9, 4, 7)
    ws_ = ws_ * np.array([1, 2, 0.5, 4])  # per-channel scales, still powers of two
    if st != "int8":
        wt = wt / np.repeat([1, 2, 0.5, 4], 27)
    p = {0: 4, 1: 3, 4: 1, 5: 1, 6: 108, 8: 1}
    ws = {"weight": wt, "bias": r.normal(size=4), "weight_int8_scales": ws_, "bottom_int8_scales": np.array([16.0])}

    def ref(g, f):
        wq = w(g, "L", "weight") / np.repeat(w(g, "L", "weight_int8_scales"), 27) if st == "int8" else w(g, "L", "weight")
        return refs.conv_nd(f["in"], wq, w(g, "L", "bias"), (3, 3), pads=((1, 1), (1, 1)))

    return one("Convolution", (3, 6, 6), p, ws, st, ref, x=_int8_input((3, 6, 6), 41, 4), truncation_check=False)


def convdw_int8(st, term=1):
    r = rng(42)
    wt, sc = _int8_weights(st, r, 36, 4, 6)
    p = {0: 4, 1: 3, 5: 1, 6: 36, 7: 4, 8: term}
    ws = {"weight": wt, "bias": r.normal(size=4), "weight_int8_scales": sc if term == 1 else sc[:1],
          "bottom_int8_scales": np.array([8.0])}

    def ref(g, f):
        wq = w(g, "L", "weight") / 2.0 ** 6 if st == "int8" else w(g, "L", "weight")
        return refs.conv_nd(f["in"], wq, w(g, "L", "bias"), (3, 3), groups=4)

    return one("ConvolutionDepthWise", (4, 5, 5), p, ws, st, ref, x=_int8_input((4, 5, 5), 43, 3),
               truncation_check=False)


def convdw_int8_shared(st):  # int8_scale_term=2: one weight scale for every group
    return convdw_int8(st, term=2)


def innerproduct_int8(st):
    r = rng(44)
    wt, sc = _int8_weights(st, r, 5 * 32, 5, 7)
    p = {0: 5, 1: 1, 2: 160, 8: 1}
    ws = {"weight": wt, "bias": r.normal(size=5), "weight_int8_scales": sc, "bottom_int8_scales": np.array([32.0])}

    def ref(g, f):
        wq = w(g, "L", "weight") / 2.0 ** 7 if st == "int8" else w(g, "L", "weight")
        return refs.innerproduct(f["in"], wq, w(g, "L", "bias"))

    return one("InnerProduct", (2, 4, 4), p, ws, st, ref, x=_int8_input((2, 4, 4), 45, 5), truncation_check=False)


T, R = ("fp32", "fp16"), ("fp32", "fp16")  # R: storage="fp16" must leave raw slots raw fp32
CASES: dict[str, tuple[Callable[[str], Built], tuple[str, ...]]] = {
    "Convolution": (conv2d, (*T, "bf16")),
    "Convolution-strided-dilated": (conv2d_strided, T),
    "ConvolutionDepthWise": (convdw, T),
    "ConvolutionDepthWise-grouped": (convdw_grouped, T),
    "Convolution1D": (conv1d, T),
    "ConvolutionDepthWise1D": (convdw1d, T),
    "Convolution3D": (conv3d, T),
    "ConvolutionDepthWise3D": (convdw3d, T),
    "Deconvolution": (deconv, T),
    "DeconvolutionDepthWise": (deconvdw, T),
    "Deconvolution1D": (deconv1d, T),
    "DeconvolutionDepthWise1D": (deconvdw1d, T),
    "Deconvolution3D": (deconv3d, T),
    "DeconvolutionDepthWise3D": (deconvdw3d, T),
    "DeformableConv2D": (deformable, T),
    "InnerProduct": (innerproduct, (*T, "bf16")),
    "BatchNorm": (batchnorm, R),
    "Scale": (scale, R),
    "Bias": (bias, R),
    "PReLU": (prelu, R),
    "Embed": (embed, T),
    "MemoryData": (memorydata, R),
    "MemoryData-4d": (memorydata_4d, R),
    "MemoryData-tagged": (memorydata_tagged, T),
    "LayerNorm": (layernorm, R),
    "GroupNorm": (groupnorm, R),
    "InstanceNorm": (instancenorm, R),
    "Normalize": (normalize, R),
    "RMSNorm": (rmsnorm, R),
    "RNN": (rnn, T),
    "LSTM": (lstm, T),
    "LSTM-proj-bidir": (lstm_proj_bidir, T),
    "GRU": (gru, T),
    "MultiHeadAttention": (mha, T),
    "Gemm-constB-constC": (gemm_const_b_c, T),
    "Gemm-constA-constC": (gemm_const_a, T),
    "Quantize": (quantize, R),
    "Dequantize": (dequantize, R),
    "Requantize": (requantize, R),
    "Padding-per-channel": (padding, R),
    "Convolution-int8-scales": (conv_int8, ("fp32", "fp16", "int8")),
    "ConvolutionDepthWise-int8-scales": (convdw_int8, ("fp32", "int8")),
    "ConvolutionDepthWise-int8-shared-scale": (convdw_int8_shared, ("fp32", "int8")),
    "InnerProduct-int8-scales": (innerproduct_int8, ("fp32", "fp16", "int8")),
}

PARAMS = [pytest.param(case, st, id=f"{case}-{st}") for case, (_, sts) in CASES.items() for st in sts]


def test_every_weighted_type_is_covered():
    covered = {case.split("-")[0] for case in CASES}
    assert set(WEIGHT_TABLE) <= covered, f"no synthetic case for {sorted(set(WEIGHT_TABLE) - covered)}"


def _bits(a: np.ndarray) -> bytes:
    return a.dtype.str.encode() + str(a.shape).encode() + np.ascontiguousarray(a).tobytes()


def _assert_close(y: np.ndarray, ref: np.ndarray, tol: float, what: str) -> None:
    assert y.shape == ref.shape, f"{what}: ncnn shape {y.shape}, reference {ref.shape}"
    err = np.abs(y.astype(np.float64) - ref)
    bound = tol + tol * np.abs(ref)
    assert np.all(err <= bound), f"{what}: max |ncnn - ref| = {err.max():.3g} (tolerance {tol} abs + rel)"


@pytest.mark.parametrize("case,storage", PARAMS)
def test_weighted_layer(case: str, storage: str, tmp_path: Path):
    build, _ = CASES[case]
    b = build(storage)
    g = b.graph
    assert g.check() == []
    for ly in g.layers:  # storage applies to tagged slots only; raw slots stay raw float32
        for wt in ly.weights.values():
            assert wt.storage == (storage if wt.tagged else "raw"), (ly.name, wt)

    a_param, a_bin = tmp_path / "a.param", tmp_path / "a.bin"
    g.save(a_param, a_bin)
    data = a_bin.read_bytes()
    assert len(data) % 4 == 0

    # ncnn reads exactly the bytes we wrote: 4 bytes fewer and load_model fails
    if b.truncation_check:
        short = tmp_path / "short.bin"
        short.write_bytes(data[:-4])
        assert model_file_accepted(a_param, a_bin)
        assert not model_file_accepted(a_param, short), "ncnn did not need the last 4 bytes we wrote"

    # weights re-read from our .bin are the ones we set, bit for bit
    g2 = Graph.load(a_param, a_bin)
    for ly in g.layers:
        ly2 = g2.layer(ly.name)
        assert list(ly2.weights) == list(ly.weights)
        for name, wt in ly.weights.items():
            assert ly2.weights[name].storage == wt.storage
            assert _bits(ly2.weights[name].data) == _bits(wt.data), (ly.name, name)

    # save -> load -> save: byte-identical .bin and identical .param
    b_param, b_bin = tmp_path / "b.param", tmp_path / "b.bin"
    g2.save(b_param, b_bin)
    assert b_bin.read_bytes() == data
    assert b_param.read_text() == a_param.read_text()

    for preset, tol in (("fp32", ATOL), ("default", LOOSE)):
        ya = run_files(a_param, a_bin, b.feeds, [b.out], preset)[b.out]
        yb = run_files(b_param, b_bin, b.feeds, [b.out], preset)[b.out]
        assert _bits(ya) == _bits(yb), f"{preset}: outputs differ after the round trip"
        ref = b.ref(g2)
        if b.exact_int:  # int8 output (extract converts it to float32 values)
            assert ya.shape == ref.shape
            assert np.array_equal(ya, np.round(ya)) and np.abs(ya).max() <= 127
            assert np.abs(ya.astype(int) - ref.astype(int)).max() <= 1, f"{preset}: int8 output differs by > 1"
        else:
            assert np.all(np.isfinite(ya)), f"{preset}: non-finite output"
            _assert_close(ya, ref, tol, f"{case}/{storage}/{preset}")


@pytest.mark.parametrize("case,storage", PARAMS)
def test_run_bridge_matches_the_files(case: str, storage: str, tmp_path: Path):
    """ncnnpass.ir.runtime (param text + .bin bytes from memory) gives the file-loaded outputs bit for bit."""
    b = CASES[case][0](storage)
    b.graph.save(tmp_path / "a.param", tmp_path / "a.bin")
    for preset in ("fp32", "default"):
        y_files = run_files(tmp_path / "a.param", tmp_path / "a.bin", b.feeds, [b.out], preset)[b.out]
        y_bridge = runtime.run(b.graph, b.feeds, b.out, options=preset, num_threads=1)[b.out]
        assert _bits(y_bridge) == _bits(y_files), preset
