"""``eliminate-flatten-after-innerproduct``: InnerProduct outputs a 1-D blob unless its input is 2-D (then it
is a batch of rows); a Flatten after a 1-D result does nothing. ncnnoptimize's
``eliminate_flatten_after_innerproduct``, plus the 2-D check it lacks.
"""

from __future__ import annotations

from ..engine import RulePass

TEXT = """
rule eliminate-flatten-after-innerproduct
match:
  InnerProduct fc 1 1 x t! ...
  Flatten f 1 1 t y
where:
  rank(x) != 2
replace:
  @fc fc 1 1 x t  @fc
  y := t
"""

PASS = RulePass("eliminate-flatten-after-innerproduct", "Flatten after a 1-D InnerProduct result removed", TEXT,
                file=__file__)
