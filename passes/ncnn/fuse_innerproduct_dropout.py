"""``fuse-innerproduct-dropout``: a Dropout with ``scale != 1`` after an InnerProduct folds into it.

At inference ncnn's Dropout multiplies by ``0=scale``: ``(W·x + b)·s`` = ``(s·W)·x + s·b``. The
InnerProduct must have no fused activation. ncnnoptimize's ``fuse_innerproduct_dropout``.
"""

from __future__ import annotations

from ..engine import RulePass
from ._fold import FOLD_BOUNDS, HOOKS

TEXT = """
rule fuse-innerproduct-dropout
match:
  InnerProduct c 1 1 x t  9=0 8=0 ...
  Dropout d 1 1 t y  0=%s
where:
  %s != 1 and has_weights(c)
replace:
  @c c 1 1 x y  @c
weights:
  c.weight = out_weight(c, %s)
  c.bias = out_bias(c, %s, 0.0) if c.bias_term else none
"""

PASS = RulePass("fuse-innerproduct-dropout", "Dropout (scale != 1) after InnerProduct folded into its weights",
                TEXT, HOOKS, file=__file__,
                numeric_bounds=FOLD_BOUNDS)
