"""Weight arithmetic shared by the folding passes (hooks called from pattern text as ``fn(m, ...)``).

Every convolution-like layer ncnn has (Convolution*, Deconvolution*, InnerProduct, including the
grouped/depthwise ones) stores its weight output-channel-major: the ``weight_data_size / num_output``
values of output channel ``o`` are contiguous. Folding per-output-channel affine maps therefore
works on a ``(num_output, -1)`` view. Results are float32 arrays; the engine stores them as fp32
(or, when the run asks to keep storage, in the original fp16/bf16).
"""

from __future__ import annotations

import numpy as np

from ncnnpass.ir import Layer, Weight, layer_types

# The numeric bound folding passes declare (see Pass.numeric_bound): exact up to fp32 rounding, but with
# fold_storage="keep" a folded weight is stored back in fp16 (2^-11 relative rounding) or bf16 (2^-8).
FOLD_BOUNDS = {"fp32": 1e-4, "keep": 5e-2}

# BinaryOp op codes as y = s * x + h with scalar b: add, sub, mul, div, rsub.
AFFINE_OPS = (0, 1, 2, 3, 7)
CONV_LIKE = layer_types.types_with("conv_like")


def affine_of(op: int, b: float) -> tuple[float, float]:
    """(s, h) with ``BinaryOp(op, scalar b)(x) == s * x + h`` (as float32 arithmetic)."""
    b32 = np.float32(b)
    if op == 0:
        return 1.0, float(b32)
    if op == 1:
        return 1.0, float(-b32)
    if op == 2:
        return float(b32), 0.0
    if op == 3:
        return float(np.float32(1.0) / b32), 0.0
    if op == 7:
        return -1.0, float(b32)
    raise ValueError(f"BinaryOp op {op} is not affine")


def _arr(x) -> np.ndarray:
    if isinstance(x, Weight):
        return x.float32()
    return np.asarray(x, np.float32)


def _n_out(layer: Layer) -> int:
    return int(layer.get("num_output"))


def _bias(layer: Layer) -> np.ndarray:
    n = _n_out(layer)
    w = layer.weights.get("bias")
    return w.float32().astype(np.float32).copy() if w is not None else np.zeros(n, np.float32)


def out_weight(m, layer: Layer, scale) -> np.ndarray:
    """Weight with output channel o multiplied by ``scale[o]`` (or a scalar)."""
    n = _n_out(layer)
    w = layer.weights["weight"].float32().reshape(n, -1)
    s = np.broadcast_to(_arr(scale).reshape(-1), (n,)).reshape(n, 1)
    return (w * s).astype(np.float32).reshape(-1)


def out_bias(m, layer: Layer, scale, shift) -> np.ndarray:
    """``bias * scale + shift`` per output channel (a missing bias counts as zeros)."""
    n = _n_out(layer)
    s = np.broadcast_to(_arr(scale).reshape(-1), (n,))
    h = np.broadcast_to(_arr(shift).reshape(-1), (n,))
    return (_bias(layer) * s + h).astype(np.float32)


def in_weight(m, layer: Layer, s: float) -> np.ndarray:
    """Weight of a layer whose input is pre-multiplied by the scalar ``s`` (folding forward)."""
    return (layer.weights["weight"].float32() * np.float32(s)).astype(np.float32)


def in_bias(m, layer: Layer, h: float) -> np.ndarray:
    """Bias of a layer whose input is pre-shifted by the scalar ``h``: ``bias + h * sum(W[o])``."""
    n = _n_out(layer)
    w = layer.weights["weight"].float32().reshape(n, -1).astype(np.float64)
    return (_bias(layer).astype(np.float64) + np.float64(h) * w.sum(axis=1)).astype(np.float32)


def bn_coefficients(bn: Layer) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm as ``y = x * b + a`` (ncnn's own precomputation, in float32)."""
    slope, mean, var, bias = (bn.weights[k].float32().astype(np.float32) for k in ("slope", "mean", "var", "bias"))
    eps = np.float32(bn.get("eps"))
    sqrt_var = np.sqrt((var + eps).astype(np.float64)).astype(np.float32)
    b = slope / sqrt_var
    a = bias - slope * mean / sqrt_var
    return b.astype(np.float32), a.astype(np.float32)


def bn_weight(m, layer: Layer, bn: Layer) -> np.ndarray:
    return out_weight(m, layer, bn_coefficients(bn)[0])


def bn_bias(m, layer: Layer, bn: Layer) -> np.ndarray:
    b, a = bn_coefficients(bn)
    return out_bias(m, layer, b, a)


def has_padding(layer: Layer) -> bool:
    """True if the convolution pads its input (explicit pads, or SAME modes -233/-234)."""
    pads = [int(layer.get(k)) for k in ("pad_left", "pad_right", "pad_top", "pad_bottom")]
    return any(p != 0 for p in pads)


HOOKS = {
    "affine": lambda m, op, b: list(affine_of(int(op), float(b))),
    "out_weight": out_weight,
    "out_bias": out_bias,
    "in_weight": in_weight,
    "in_bias": in_bias,
    "bn_weight": bn_weight,
    "bn_bias": bn_bias,
    "has_padding": lambda m, layer: has_padding(layer),
}
