"""Tool built on the passes, precision on the phone: ARM-safe featmask placement, sensitivity, and
the repair search.

Public API: :func:`repair_for_phone` (-> :class:`PhoneRepairResult`), :func:`make_featmask_safe`,
:func:`unsafe_edges`, :func:`featmask_safe_closure`, :func:`macs_per_layer`.
"""

from ncnnpass.ir.featmask import featmask_safe_closure, make_featmask_safe, unsafe_edges

from .macs import fp16_mac_share, macs_per_layer
from .phone_repair import PhoneRepairResult, repair_for_phone

__all__ = ["PhoneRepairResult", "featmask_safe_closure", "fp16_mac_share", "macs_per_layer",
           "make_featmask_safe", "repair_for_phone", "unsafe_edges"]
