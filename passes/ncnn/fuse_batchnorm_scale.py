"""``fuse-batchnorm-scale``: a per-channel Scale after BatchNorm folds into the BatchNorm.

``(x·b + a)·s + t`` is a BatchNorm with ``slope' = slope·s`` and ``bias' = bias·s + t`` (``t`` = the
Scale's bias, if any). ncnnoptimize's ``fuse_batchnorm_scale``.
"""

from __future__ import annotations

import numpy as np

from ..engine import RulePass

TEXT = """
rule fuse-batchnorm-scale
match:
  BatchNorm bn 1 1 x t  0=%ch 1=*
  Scale sc 1 1 t y  0=%ch 1=%bias
replace:
  BatchNorm bn 1 1 x y  @bn
weights:
  bn.slope = scaled_slope(bn, sc)
  bn.mean = bn.mean
  bn.var = bn.var
  bn.bias = scaled_bias(bn, sc)
"""


def scaled_slope(m, bn, sc):
    return bn.weight("slope") * sc.weight("scale")


def scaled_bias(m, bn, sc):
    out = bn.weight("bias") * sc.weight("scale")
    if "bias" in sc.weights:
        out = out + sc.weight("bias")
    return out.astype(np.float32)


PASS = RulePass("fuse-batchnorm-scale", "per-channel Scale after BatchNorm folded into the BatchNorm", TEXT,
                {"scaled_slope": scaled_slope, "scaled_bias": scaled_bias}, file=__file__)
