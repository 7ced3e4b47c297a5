"""``eliminate-reshape-after-global-pooling``: a Reshape to 1-D (``0=-1`` or ``0=C``, nothing else) after
global Pooling does nothing. ncnnoptimize's ``eliminate_reshape_after_global_pooling``.
"""

from __future__ import annotations

from ..engine import RulePass

TEXT = """
rule eliminate-reshape-after-global-pooling
match:
  Pooling p 1 1 x t!  4=1 ...
  Reshape r 1 1 t y  0=%w 1=-233 11=-233 2=-233
where:
  %w == -1 or %w == channels(t)
replace:
  @p p 1 1 x t  @p
  y := t
"""

PASS = RulePass("eliminate-reshape-after-global-pooling", "1-D Reshape after global Pooling removed", TEXT,
                file=__file__)
