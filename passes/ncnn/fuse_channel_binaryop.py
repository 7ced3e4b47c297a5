"""``fuse-channel-binaryop``: BinaryOp mul/add with a per-channel constant folds into the producer.

A ``MemoryData`` of C values (shape ``[C]``, or ``1×1×C``) multiplied with / added to the output of a
Convolution, ConvolutionDepthWise, Deconvolution or DeconvolutionDepthWise with C outputs (no fused
activation, no int8): ncnn broadcasts it per channel (a 1-D operand whose length equals the channel
count is per-channel, even when W == C), so ``W'[o] = W[o]·k[o]``, ``b'[o] = b[o]·k[o]`` (mul) or
``b'[o] = b[o] + k[o]`` (add). InnerProduct takes a 1-D ``[C]`` constant (its output is 1-D) when its
input is not 2-D. The MemoryData stays if something else reads it. ncnnoptimize's
``fuse_convolution_mul/add``, ``fuse_deconvolution_mul/add``, ``fuse_innerproduct_add``.
"""

from __future__ import annotations

from ..engine import RulePass
from ._fold import FOLD_BOUNDS, HOOKS

CONV = "conv"  # trait group of ncnnpass.ir.layer_types: the 2-D (de)convolutions


def _rules(op: int, first: bool) -> str:
    name = f"{'mul' if op == 2 else 'add'}{'-first' if first else ''}"
    ins = "k t" if first else "t k"
    w_scale = "md.data" if op == 2 else "1.0"
    b_shift = "0.0" if op == 2 else "md.data"
    return f"""
rule conv-{name}
match:
  {CONV} c 1 1 x t  9=0 8=0 ...
  MemoryData md 0 1 k!  0=%w 1=%h 2=%c ...
  BinaryOp op 2 1 {ins} y  0={op} 1=0
where:
  has_weights(c) and ((%w == c.num_output and %h == 0 and %c == 0) or (%w == 1 and %h == 1 and %c == c.num_output))
replace:
  @c c 1 1 x y  @c bias_term=1
  @md md 0 1 k  @md
weights:
  c.weight = out_weight(c, {w_scale})
  c.bias = out_bias(c, {w_scale}, {b_shift})

rule innerproduct-{name}
match:
  InnerProduct c 1 1 x t  9=0 8=0 ...
  MemoryData md 0 1 k!  0=%w 1=0 2=0 11=0 ...
  BinaryOp op 2 1 {ins} y  0={op} 1=0
where:
  has_weights(c) and %w == c.num_output and rank(x) != 2
replace:
  @c c 1 1 x y  @c bias_term=1
  @md md 0 1 k  @md
weights:
  c.weight = out_weight(c, {w_scale})
  c.bias = out_bias(c, {w_scale}, {b_shift})
"""


TEXT = "".join(_rules(op, first) for op in (2, 0) for first in (False, True))

PASS = RulePass("fuse-channel-binaryop",
                "BinaryOp mul/add with a per-channel MemoryData folded into the preceding conv/InnerProduct",
                TEXT, HOOKS, file=__file__,
                numeric_bounds=FOLD_BOUNDS)
