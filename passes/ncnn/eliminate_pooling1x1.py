"""``eliminate-pooling1x1``: Pooling with a 1×1 kernel, stride 1 and no padding is the identity.

Not global, not adaptive (those reduce). With kernel 1 and stride 1 no pad mode adds padding.
ncnnoptimize's ``eliminate_pooling1x1``.
"""

from __future__ import annotations

from ..engine import RulePass

TEXT = """
rule eliminate-pooling1x1
match:
  Pooling p 1 1 x y  1=1 11=1 2=1 12=1 3=0 14=0 13=0 15=0 4=0 7=0 ...
where:
  rank(x) == 3
replace:
  y := x
"""

PASS = RulePass("eliminate-pooling1x1", "Pooling 1x1 stride 1 without padding removed", TEXT, file=__file__)
