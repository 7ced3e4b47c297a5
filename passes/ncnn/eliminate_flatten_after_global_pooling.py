"""``eliminate-flatten-after-global-pooling``: global Pooling already outputs a 1-D blob; a Flatten after it
does nothing. ncnnoptimize's ``eliminate_flatten_after_global_pooling``.
"""

from __future__ import annotations

from ..engine import RulePass

TEXT = """
rule eliminate-flatten-after-global-pooling
match:
  Pooling p 1 1 x t!  4=1 ...
  Flatten f 1 1 t y
replace:
  @p p 1 1 x t  @p
  y := t
"""

PASS = RulePass("eliminate-flatten-after-global-pooling", "Flatten after global Pooling (already 1-D) removed",
                TEXT, file=__file__)
