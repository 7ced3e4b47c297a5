"""``repair-for-target``: keep the fewest layers out of fp16 that bring a target's error within a tolerance.

The phone repair (:func:`ncnnpass.passes.precision.repair_for_phone`) as a pass: it measures the model on
the target (``arm``: the emulated phone CPU), searches the layers to keep fp32 (featmask ``31=23``) and
writes that placement into the graph, made safe on every path (:func:`ncnnpass.ir.featmask.make_featmask_safe`).
It is terminal: it runs once, after the passes before it reached their fixpoint. When even every layer
in fp32 misses the tolerance it raises (nothing is written). ``reference``: an ONNX file to measure against
(default: the same ncnn model on this machine with fp16 off).
"""

from __future__ import annotations

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.ir.featmask import KEEP_FP32_BITS, make_featmask_safe
from ncnnpass.ir.runtime import describe_target

from ..engine import FunctionPass, Option, PassContext


def repair_for_target(graph: Graph, ctx: PassContext, target: str = "arm", tolerance: float = 1e-3,
                      reference: str = "", order: str = "suffix", workers: int = 2) -> int:
    from ncnnpass.passes.precision.phone_repair import repair_for_phone

    shapes = ctx.input_shapes
    if not shapes:
        raise NcnnpassError("repair-for-target needs the input shape (give --shape C,H,W or an Input size)")
    if len(shapes) != 1:
        raise NcnnpassError(f"repair-for-target needs a single-input model (this one has {', '.join(shapes)})")
    res = repair_for_phone(graph, next(iter(shapes.values())), tolerance=tolerance, target=target,
                           reference=reference or None, progress=ctx.say, workers=workers, order_by=order)
    ctx.note(f"phone repair: {res.summary()}")
    if res.layers_marked:
        ctx.note("kept out of fp16: " + ", ".join(res.layers_marked))
    if not res.reached:
        raise NcnnpassError(f"the phone error stays above {tolerance:g} on {describe_target(target)} "
                            f"({res.error_after:.3g}, held-out {res.heldout_error:.3g}) even with "
                            f"{len(res.layers_marked)} layers in fp32; nothing written")
    changed = 0
    for name in res.layers_marked:
        ly = graph.layer(name)
        if ly.featmask | KEEP_FP32_BITS != ly.featmask:
            ly.featmask = ly.featmask | KEEP_FP32_BITS
            changed += 1
    make_featmask_safe(graph)
    return changed


PASS = FunctionPass(
    "repair-for-target",
    "keep the fewest layers fp32 (31=23, placed safely on every path) that bring the target's error within the tolerance "
    "(measured there; runs once)",
    repair_for_target, terminal=True,
    options={"target": Option("arm", "where to measure: arm (emulated Cortex-A76) or arm-a57",
                              choices=("arm", "arm-a76", "arm-a57")),
             "tolerance": Option(1e-3, "largest accepted max |target - reference| on the outputs", float),
             "reference": Option("", "an ONNX file to measure against (default: this model on x86, fp32)", str),
             "order": Option("suffix", "search order", choices=("suffix", "sensitivity")),
             "workers": Option(2, "parallel target workers", int)})
