"""``adaptive-avgpool-lowering``: adaptive Pooling (``7=1``) <-> fixed-kernel or global Pooling.

``direction=lower`` (default):

* adaptive pooling to ``out_h × out_w`` of an ``H × W`` input whose size is known and divisible becomes
  ``Pooling 1=W/out_w 11=H/out_h 2=W/out_w 12=H/out_h 5=1`` (valid padding): ncnn's adaptive bins are
  ``[floor(i·H/out), ceil((i+1)·H/out))``, which for divisible sizes are exactly those windows, and both
  average over the window size. Faster, and runs on ncnn builds older than adaptive pooling.
  The size counts as known only when the model fixes it: its ``Input`` layers declare it, or the pass
  is given ``static=1`` (then the input shape of the run is taken as the only one the model will see).
  PP-OCR recognition models take any width, so they are left alone unless asked.
* adaptive pooling to 1×1 whose every consumer is a ``Flatten`` becomes global pooling (``4=1``, 1-D,
  exactly what the Flatten produced) and the Flattens go — unless a Flatten leads to an InnerProduct
  that ``gap-fc-to-conv`` is about to convert.

``direction=raise``: global Pooling (``4=1``, 1-D output) becomes adaptive 1×1 Pooling (c×1×1) + Flatten,
which is exact; ``gap-fc-to-conv`` uses this step when an InnerProduct follows.
"""

from __future__ import annotations

from ..engine import Option, RulePass
from .gap_fc_to_conv import reaches_innerproduct

TEXT = """
rule lower-to-kernel
match:
  Pooling p 1 1 x y  4=0 7=1 0=%t ...
where:
  static_size(x) and rank(x) == 3 and x.w % out_w(p, x) == 0 and x.h % out_h(p, x) == 0 and not flatten_only(y)
replace:
  Pooling p 1 1 x y  0=%t 1={x.w // out_w(p, x)} 11={x.h // out_h(p, x)} 2={x.w // out_w(p, x)} 12={x.h // out_h(p, x)} 5=1 31={p.featmask if p.featmask else none}

rule lower-to-global
match:
  Pooling p 1 1 x t  4=0 7=1 8=1 18=1 0=%t ...
  Flatten f 1 1 t y
where:
  rank(x) == 3 and not reaches_innerproduct(y)
replace:
  Pooling p 1 1 x y  0=%t 4=1 31={p.featmask if p.featmask else none}

rule raise
match:
  Pooling p 1 1 x v  4=1 ...
where:
  rank(x) == 3
replace:
  Pooling p 1 1 x v3  @p ~4 ~18 7=1 8=1
  Flatten flatten 1 1 v3 v
"""


def out_w(m, p, x) -> int:
    """Output width; -233 keeps the input width."""
    v = int(p.get("out_w"))
    return m.ctx.shape(x.name)[2] if v == -233 else v


def out_h(m, p, x) -> int:
    v = int(p.get("out_h"))
    return m.ctx.shape(x.name)[1] if v == -233 else v


def flatten_only(m, y) -> bool:
    """Every reader of ``y`` is a Flatten (then ``lower-to-global`` applies instead)."""
    b = m.ctx.graph.blobs[y.name]
    return bool(b.consumers) and y.name not in m.protected and all(c.type == "Flatten" for c in b.consumers)


def static_size(m, x) -> bool:
    """The input size is fixed: declared by the model's Input layers, or the pass was given static=1."""
    from ..engine.context import declared_input_shapes

    if m.ctx.shape(x.name) is None:
        return False
    if m.ctx.options.get("static"):
        return True
    return declared_input_shapes(m.ctx.graph) is not None


def _enabled(rule, options) -> bool:
    return (rule.name == "raise") == (options["direction"] == "raise")


PASS = RulePass(
    "adaptive-avgpool-lowering",
    "adaptive Pooling -> fixed-kernel Pooling (known, divisible size) or global; direction=raise: the reverse",
    TEXT, {"out_w": out_w, "out_h": out_h, "static_size": static_size, "flatten_only": flatten_only,
           "reaches_innerproduct": reaches_innerproduct},
    needs_shapes=True, file=__file__, enabled=_enabled,
    options={"direction": Option("lower", "lower (adaptive -> kernel/global) or raise (global -> adaptive + Flatten)",
                                 choices=("lower", "raise")),
             "static": Option(False, "1: the run's input shape is the only one the model sees (allows lowering)",
                              bool)})
