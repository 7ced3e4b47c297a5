"""``fuse-binaryop-eltwise``: ``a·k0 + b·k1`` written as three BinaryOps becomes one ``Eltwise`` SUM.

``BinaryOp add(BinaryOp mul(a, k0), BinaryOp mul(b, k1))`` with scalar multipliers (or one side
unscaled) = ``Eltwise 0=1 1=k0,k1``. Eltwise needs both operands of the same shape while BinaryOp
broadcasts, so the rule needs blob shapes (an input shape for the run) and fires only when
``shape(a) == shape(b)``. ncnnoptimize's ``fuse_binaryop_eltwise``.
"""

from __future__ import annotations

from ..engine import RulePass

TEXT = """
rule both-scaled
match:
  BinaryOp m0 1 1 a a2  0=2 1=1 2=%k0
  BinaryOp m1 1 1 b b2  0=2 1=1 2=%k1
  BinaryOp add 2 1 a2 b2 y  0=0 1=0
where:
  shape(a) == shape(b)
replace:
  Eltwise add 2 1 a b y  0=1 1={[float(%k0), float(%k1)]}

rule first-scaled
match:
  BinaryOp m0 1 1 a a2  0=2 1=1 2=%k0
  BinaryOp add 2 1 a2 b y  0=0 1=0
where:
  shape(a) == shape(b)
replace:
  Eltwise add 2 1 a b y  0=1 1={[float(%k0), 1.0]}

rule second-scaled
match:
  BinaryOp m1 1 1 b b2  0=2 1=1 2=%k1
  BinaryOp add 2 1 a b2 y  0=0 1=0
where:
  shape(a) == shape(b)
replace:
  Eltwise add 2 1 a b y  0=1 1={[1.0, float(%k1)]}
"""

PASS = RulePass("fuse-binaryop-eltwise", "add of scalar-multiplied blobs of equal shape -> Eltwise SUM with coeffs",
                TEXT, needs_shapes=True, file=__file__)
