"""``eliminate-dropout``: a Dropout with ``scale == 1`` is the identity at inference; consumers read its input.

ncnnoptimize's ``eliminate_dropout``. A Dropout producing a protected output stays.
"""

from __future__ import annotations

from ..engine import RulePass

TEXT = """
rule eliminate-dropout
match:
  Dropout d 1 1 x y  0=1.0
replace:
  y := x
"""

PASS = RulePass("eliminate-dropout", "Dropout with scale 1 removed", TEXT, file=__file__)
