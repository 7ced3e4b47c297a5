"""``eliminate-noop``: ``Noop`` layers (one input, one output) are removed. ncnnoptimize's ``eliminate_noop``."""

from __future__ import annotations

from ..engine import RulePass

TEXT = """
rule eliminate-noop
match:
  Noop n 1 1 x y ...
replace:
  y := x
"""

PASS = RulePass("eliminate-noop", "Noop layers removed", TEXT, file=__file__)
