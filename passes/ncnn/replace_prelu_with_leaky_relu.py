"""``replace-prelu-with-leaky-relu``: a PReLU with a single slope is a leaky ReLU (``ReLU 0=slope``).

ncnnoptimize's ``replace_prelu_with_leaky_relu``. Needs the weights (the slope is in the .bin).
"""

from __future__ import annotations

from ..engine import RulePass

TEXT = """
rule prelu-single-slope
match:
  PReLU p 1 1 x y  0=1
where:
  has_weights(p)
replace:
  ReLU p 1 1 x y  0={float(f32(p.slope)[0])} 31={p.featmask if p.featmask else none}
"""

PASS = RulePass("replace-prelu-with-leaky-relu", "PReLU with one slope -> ReLU 0=slope", TEXT, file=__file__)
