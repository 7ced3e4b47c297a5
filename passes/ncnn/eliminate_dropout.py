"""``eliminate-dropout``: a Dropout with ``scale == 1`` is the identity at inference; consumers read its input.

ncnnoptimize's ``eliminate_dropout``. A Dropout producing a protected output stays, and so does an unmasked
Dropout in front of a layer kept out of fp16 storage (featmask bit 1): that is the ARM cast boundary
``keep-fp32`` places (see docs/phone.md); removing it would hand fp16 blobs to an fp32 layer on ARM.
"""

from __future__ import annotations

from ..engine import RulePass

TEXT = """
rule eliminate-dropout
match:
  Dropout d 1 1 x y  0=1.0
where:
  fp32_storage(d) or not feeds_fp32_storage(y)
replace:
  y := x
"""

PASS = RulePass("eliminate-dropout", "Dropout with scale 1 removed", TEXT, file=__file__)
