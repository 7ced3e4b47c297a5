"""``fuse-batchnorm``: BatchNorm after a convolution-like layer folds into its weights and bias.

BatchNorm computes ``y = x·b + a`` with ``b = slope / sqrt(var + eps)``, ``a = bias - slope·mean /
sqrt(var + eps)``. For Convolution, ConvolutionDepthWise, Deconvolution, DeconvolutionDepthWise,
Convolution1D and InnerProduct (no fused activation, no int8): ``W'[o] = W[o]·b[o]``,
``bias'[o] = bias[o]·b[o] + a[o]`` (a missing bias counts as zeros; ``bias_term`` becomes 1). This is
ncnnoptimize's ``fuse_*_batchnorm``. Not after an InnerProduct reading a 2-D blob: its result is rows ×
num_output, and ncnn's BatchNorm scales a 2-D blob per row, not per output.
"""

from __future__ import annotations

from ..engine import RulePass
from ._fold import FOLD_BOUNDS, HOOKS

TEXT = """
rule fuse-batchnorm
match:
  conv_like c 1 1 x t  9=0 8=0 ...
  BatchNorm bn 1 1 t y  0=%ch 1=*
where:
  %ch == c.num_output and has_weights(c) and (c.type != "InnerProduct" or rank(x) != 2)
replace:
  @c c 1 1 x y  @c bias_term=1
weights:
  c.weight = bn_weight(c, bn)
  c.bias = bn_bias(c, bn)
"""

PASS = RulePass("fuse-batchnorm", "BatchNorm folded into the preceding Convolution*/Deconvolution*/InnerProduct",
                TEXT, HOOKS, file=__file__,
                numeric_bounds=FOLD_BOUNDS)
