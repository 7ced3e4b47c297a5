"""``eliminate-redundant-relu``: a ReLU whose input can never be negative is removed.

The input counts as non-negative when its producer applies ReLU already (``9=1`` on a convolution or
InnerProduct, a ReLU layer), a sigmoid (``9=4``, Sigmoid, HardSigmoid), a Clip with ``min >= 0``
(``9=3`` or a Clip layer), Softmax, Exp, AbsVal or Softplus. The seed's converted model had exactly
this: ``InnerProduct ... 9=1`` followed by a ReLU layer.
"""

from __future__ import annotations

from ..engine import RulePass

TEXT = """
rule relu-after-nonnegative
match:
  ReLU r 1 1 x y  0=0
where:
  nonnegative(x)
replace:
  y := x
"""

PASS = RulePass("eliminate-redundant-relu", "ReLU after a layer whose output is already >= 0 (9=1, ReLU, sigmoid, ...)",
                TEXT, file=__file__)
