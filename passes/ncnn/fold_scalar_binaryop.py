"""``fold-scalar-binaryop``: scalar ``BinaryOp`` add/sub/mul/div/rsub (``1=1 2=k``) folded into weights.

pnnx leaves these around every convolution of PP-OCRv4 (its "learnable affine blocks"): 118 of them.

*Backward* (the BinaryOp reads a convolution's output): ``s·(W∗x + b) + h`` = ``(s·W)∗x + (s·b + h)``,
for Convolution, ConvolutionDepthWise, Deconvolution, DeconvolutionDepthWise, Convolution1D and
InnerProduct without a fused activation (``9=0``) and without int8.

*Forward* (the BinaryOp feeds a Convolution, ConvolutionDepthWise or InnerProduct):
``W∗(s·x + h) + b`` = ``(s·W)∗x + (b + h·ΣW)``, where ΣW sums each output channel's weights. Zero padding
is the catch: the original pads ``s·x + h`` with ``pad_value`` (``18=``, default 0), so the folded layer
must pad ``x`` with ``(pad_value - h) / s`` — set as its ``18=``. A fused activation is fine here (it
comes after the linear part). Deconvolution is not folded forward: border outputs sum fewer weights.

The BinaryOp's blob may have no other consumer. Folded weights are stored fp32 (exact) unless the run
keeps fp16/bf16 storage (``apply_passes(..., fold_storage="keep")``).
"""

from __future__ import annotations

import numpy as np

from ..engine import RulePass
from ._fold import FOLD_BOUNDS, HOOKS, affine_of, has_padding

BACKWARD = "conv_like"            # trait groups of ncnnpass.ir.layer_types
FORWARD = "folds_input_affine"

TEXT = f"""
rule backward
doc "conv-like layer -> scalar BinaryOp  =>  conv-like layer with scaled/shifted weights"
match:
  {BACKWARD} c 1 1 x t  9=0 8=0 ...
  BinaryOp op 1 1 t y  0=%op 1=1 2=%k
where:
  %op in [0, 1, 2, 3, 7] and not (%op == 3 and %k == 0) and has_weights(c)
replace:
  @c c 1 1 x y  @c bias_term=1
weights:
  c.weight = out_weight(c, affine(%op, %k)[0])
  c.bias = out_bias(c, affine(%op, %k)[0], affine(%op, %k)[1])

rule forward
doc "scalar BinaryOp -> Convolution/ConvolutionDepthWise/InnerProduct  =>  folded weights, pad_value adjusted"
match:
  BinaryOp op 1 1 x t  0=%op 1=1 2=%k
  {FORWARD} c 1 1 t y  8=0 ...
where:
  %op in [0, 1, 2, 3, 7] and has_weights(c) and forward_ok(c, %op, %k)
replace:
  @c c 1 1 x y  @c bias_term=1 18={{forward_pad(c, %op, %k)}}
weights:
  c.weight = in_weight(c, affine(%op, %k)[0])
  c.bias = in_bias(c, affine(%op, %k)[1])
"""


def forward_ok(m, layer, op, k) -> bool:
    s, h = affine_of(int(op), float(k))
    if s == 0 or not np.isfinite(s) or not np.isfinite(h):
        return False
    if layer.type == "InnerProduct" or not has_padding(layer):
        return True
    pad = (np.float32(layer.get("pad_value")) - np.float32(h)) / np.float32(s)
    return bool(np.isfinite(pad))


def forward_pad(m, layer, op, k):
    """The new ``18=pad_value`` (``None`` keeps the param absent when the layer does not pad)."""
    if layer.type == "InnerProduct" or not has_padding(layer):
        return layer.params.get(18)
    s, h = affine_of(int(op), float(k))
    pad = float((np.float32(layer.get("pad_value")) - np.float32(h)) / np.float32(s))
    return None if pad == 0.0 else pad


PASS = RulePass("fold-scalar-binaryop",
                "scalar BinaryOp add/sub/mul/div/rsub folded into the neighbouring conv/InnerProduct weights",
                TEXT, {**HOOKS, "forward_ok": forward_ok, "forward_pad": forward_pad}, file=__file__,
                numeric_bounds=FOLD_BOUNDS)
