"""``fuse-memorydata-binaryop``: a BinaryOp with a one-value MemoryData becomes a scalar BinaryOp.

``BinaryOp(x, MemoryData[1])`` = ``BinaryOp 1=1 2=value``; with the constant first, the operation is
mirrored (sub -> rsub, div -> rdiv, pow -> rpow, atan2 -> ratan2, fmod -> rfmod, floor_divide ->
rfloor_divide, remainder -> rremainder, and back). ncnnoptimize's ``fuse_memorydata_binaryop``. The
MemoryData stays if something else reads it.
"""

from __future__ import annotations

from ..engine import RulePass

# op -> op with the operands swapped (commutative ops map to themselves)
MIRROR = {0: 0, 1: 7, 2: 2, 3: 8, 4: 4, 5: 5, 6: 9, 7: 1, 8: 3, 9: 6, 10: 11, 11: 10, 12: 13, 13: 12,
          14: 14, 15: 16, 16: 15, 17: 18, 18: 17}

TEXT = """
rule constant-second
match:
  MemoryData md 0 1 k!  0=1 1=0 2=0 11=0 ...
  BinaryOp op 2 1 x k y  0=%op 1=0
replace:
  @md md 0 1 k  @md
  BinaryOp op 1 1 x y  0=%op 1=1 2={float(f32(md.data)[0])}

rule constant-first
match:
  MemoryData md 0 1 k!  0=1 1=0 2=0 11=0 ...
  BinaryOp op 2 1 k x y  0=%op 1=0
where:
  %op in mirrorable
replace:
  @md md 0 1 k  @md
  BinaryOp op 1 1 x y  0={mirror(%op)} 1=1 2={float(f32(md.data)[0])}
"""

PASS = RulePass("fuse-memorydata-binaryop", "BinaryOp with a one-value MemoryData -> scalar BinaryOp (1=1 2=value)",
                TEXT, {"mirror": lambda m, op: MIRROR[int(op)], "mirrorable": list(MIRROR)}, file=__file__)
