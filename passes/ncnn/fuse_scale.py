"""``fuse-scale``: a per-channel Scale layer after a convolution-like layer folds into its weights.

``(W∗x + b)·s + t`` = ``(s·W)∗x + (s·b + t)`` per output channel, for Convolution*, Deconvolution*,
Convolution1D and InnerProduct without fused activation or int8. (Caffe-style models write
BatchNorm + Scale; ``fuse-batchnorm-scale`` handles that pair.) Not after an InnerProduct reading a 2-D
blob: ncnn's Scale scales a 2-D result per row, not per output.
"""

from __future__ import annotations

from ..engine import RulePass
from ._fold import FOLD_BOUNDS, HOOKS

TEXT = """
rule fuse-scale
match:
  conv_like c 1 1 x t  9=0 8=0 ...
  Scale sc 1 1 t y  0=%ch 1=*
where:
  %ch == c.num_output and has_weights(c) and (c.type != "InnerProduct" or rank(x) != 2)
replace:
  @c c 1 1 x y  @c bias_term=1
weights:
  c.weight = out_weight(c, sc.scale)
  c.bias = out_bias(c, sc.scale, sc.bias if sc.bias_term else 0.0)
"""


PASS = RulePass("fuse-scale", "per-channel Scale folded into the preceding Convolution*/Deconvolution*/InnerProduct",
                TEXT, HOOKS, file=__file__,
                numeric_bounds=FOLD_BOUNDS)
