"""Tool built on the passes, precision on the phone: the mixed-precision search behind ``repair-for-target``.

- :mod:`.placement`: per-layer choices (fp16, ``31=64`` no winograd, ``31=1`` fp32 arithmetic, ``31=23`` fp32
  off the GPU) and their fp16 MAC share;
- :mod:`.criteria`: task metrics to a verdict (strings identical, drop_score, confidence change, det F, cls);
- :mod:`.evaluator`: data parts, the reference, placements run on a target and judged;
- :mod:`.search`: the AMP-like search (groups, sensitivity, Pareto walk, refinement);
- :mod:`.target_repair`: :func:`repair_for_target` (-> :class:`TargetRepairResult`): the search on the target
  or a proxy, confirmed on held-out data (on the emulated phone for ``arm``);
- :mod:`.pareto`: the Pareto curve as JSON and PNG; :mod:`.sensitivity`, :mod:`.macs`.
"""

from ncnnpass.ir.featmask import featmask_safe_closure, make_featmask_safe, unsafe_edges

from .criteria import Criteria, Verdict
from .macs import fp16_mac_share, macs_per_layer
from .placement import Placement, apply_placement, fp16_share
from .target_repair import TargetRepairResult, repair_for_phone, repair_for_target

__all__ = ["Criteria", "Placement", "TargetRepairResult", "Verdict", "apply_placement", "featmask_safe_closure",
           "fp16_mac_share", "fp16_share", "macs_per_layer", "make_featmask_safe", "repair_for_phone",
           "repair_for_target", "unsafe_edges"]
