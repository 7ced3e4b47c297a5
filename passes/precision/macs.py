"""Multiply-accumulates per layer, from the layer's params and the blob shapes of one inference.

Counted: the layers whose cost is a matrix product (convolutions, InnerProduct, Gemm, MatMul,
MultiHeadAttention). Element-wise layers, norms, pooling and data movement count 0: the MAC share is the
usual proxy for the speed fp16 keeps, not a timing.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ncnnpass.ir import Graph, Layer

_CONV = {"Convolution", "ConvolutionDepthWise", "Convolution1D", "ConvolutionDepthWise1D", "Convolution3D",
         "ConvolutionDepthWise3D", "DeformableConv2D"}
_DECONV = {"Deconvolution", "DeconvolutionDepthWise", "Deconvolution1D", "DeconvolutionDepthWise1D",
           "Deconvolution3D", "DeconvolutionDepthWise3D"}


def _spatial(shape: tuple[int, ...], channels_first: bool = True) -> int:
    """Elements per channel of an ncnn blob shape in numpy order ((c,) h, w)."""
    return int(np.prod(shape[1:])) if channels_first and len(shape) > 1 else 1


def layer_macs(layer: Layer, shapes: Mapping[str, tuple[int, ...]]) -> int:
    """MACs of one layer for the given blob shapes (numpy order, as :func:`ncnnpass.ir.runtime.infer_shapes`)."""
    t = layer.type
    ins = [tuple(shapes.get(n, ())) for n in layer.inputs]
    outs = [tuple(shapes.get(n, ())) for n in layer.outputs]
    if not outs or not outs[0]:
        return 0
    out = outs[0]
    if t in _CONV:
        return int(layer.get(6, 0)) * _spatial(out)
    if t in _DECONV:
        return int(layer.get(6, 0)) * (_spatial(ins[0]) if ins and ins[0] else 0)
    if t == "InnerProduct":
        rows = ins[0][0] if ins and len(ins[0]) == 2 else 1
        return int(layer.get(2, 0)) * rows
    if t in ("Gemm", "MatMul"):
        if not ins or not ins[0]:  # constant A
            k = int(layer.get(9, 0))
        elif t == "Gemm" and int(layer.get(2, 0)):  # transA
            k = ins[0][-2] if len(ins[0]) > 1 else 1
        else:
            k = ins[0][-1]
        return int(np.prod(out)) * int(k)
    if t == "MultiHeadAttention":
        e = int(layer.get(0, 0))
        q = ins[0] if ins else out
        kv = ins[1] if len(ins) > 1 else q
        lq, lk = (q[-2] if len(q) > 1 else 1), (kv[-2] if len(kv) > 1 else 1)
        qdim = q[-1] if q else e
        kdim, vdim = int(layer.get(3, e)), int(layer.get(4, e))
        return lq * e * qdim + lk * e * (kdim + vdim) + 2 * lq * lk * e + lq * e * out[-1]
    return 0


def macs_per_layer(graph: Graph, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    """``{layer name: MACs}`` for every layer (0 for the uncounted types)."""
    return {ly.name: layer_macs(ly, shapes) for ly in graph.layers}


def fp16_mac_share(macs: Mapping[str, int], kept_fp32: set[str] | frozenset[str]) -> float:
    """Share of the MACs in layers not kept out of fp16 (1.0 when nothing is counted)."""
    total = sum(macs.values())
    if total == 0:
        return 1.0
    return 1.0 - sum(v for k, v in macs.items() if k in kept_fp32) / total
