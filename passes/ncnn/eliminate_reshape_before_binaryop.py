"""``eliminate-reshape-before-binaryop``: ``Reshape 0=1 1=1 2=C`` of a 1-D [C] vector feeding a BinaryOp whose
other operand is C×H×W is dropped: ncnn broadcasts a 1-D operand per channel when its length equals
the channel count. ncnnoptimize's ``eliminate_reshape_before_binaryop``, restricted to the case where
that holds (the Reshape stays for other readers). Not in ``optimize``: explicit c×1×1 broadcasting is the more robust form.
"""

from __future__ import annotations

from ..engine import RulePass

TEXT = """
rule vector-second
match:
  Reshape r 1 1 v t!  0=1 1=1 2=%c 11=-233
  BinaryOp op 2 1 a t y  1=0 ...
where:
  rank(v) == 1 and channels(v) == %c and rank(a) == 3 and channels(a) == %c
replace:
  @r r 1 1 v t  @r
  @op op 2 1 a v y  @op

rule vector-first
match:
  Reshape r 1 1 v t!  0=1 1=1 2=%c 11=-233
  BinaryOp op 2 1 t a y  1=0 ...
where:
  rank(v) == 1 and channels(v) == %c and rank(a) == 3 and channels(a) == %c
replace:
  @r r 1 1 v t  @r
  @op op 2 1 v a y  @op
"""

PASS = RulePass("eliminate-reshape-before-binaryop", "Reshape to C x 1 x 1 before a per-channel BinaryOp removed",
                TEXT, needs_shapes=True, file=__file__)
