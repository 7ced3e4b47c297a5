"""``repair-for-target``: the placement with the most MACs in fp16 whose task metrics match the reference.

The phone repair (:func:`ncnnpass.passes.precision.repair_for_target`) as a pass: on the target (``arm``: the
emulated phone CPU, searched on lavapipe and verified on the emulator; ``vulkan``: the phone GPU on lavapipe)
it searches per-layer precision choices (fp16, ``31=64`` no winograd, ``31=1`` fp32 arithmetic, ``31=23``
fp32) judged on text lines or pages against the reference (``reference``: an ONNX file run by onnxruntime;
default: this model on x86 with fp16 off) and writes the choice into the graph, safe on every path
(:func:`ncnnpass.ir.featmask.make_featmask_safe`). Data: the built-in lines/pages, or ``images`` (a folder or
a PaddleOCR label file), split into calibration and held-out parts. It is terminal: it runs once, after the
passes before it reached their fixpoint. When the criteria are missed even on held-out data it raises
(nothing is written). ``curve``: a path prefix for the Pareto curve (``PREFIX.json``, ``PREFIX.png``).
"""

from __future__ import annotations

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.ir.runtime import describe_target

from ..engine import FunctionPass, Option, PassContext


def repair_for_target(graph: Graph, ctx: PassContext, target: str = "arm", tolerance: float = 5e-3,
                      reference: str = "", images: str = "", kind: str = "", proxy: str = "auto",
                      budget: float = 600.0, calibration: int = 0, held_out: int = 0, verify: int = 0,
                      gate: int = -1, gate_share: float = 0.005, seed: int = 0, curve: str = "", groups: int = 16,
                      pool: int = 0, workers: int = 2) -> int:
    from ncnnpass.passes.precision import Criteria, apply_placement
    from ncnnpass.passes.precision import repair_for_target as search_and_repair

    if len(graph.inputs) != 1:
        raise NcnnpassError(f"repair-for-target needs a single-input model (this one has {', '.join(graph.inputs)})")
    res = search_and_repair(graph, target, onnx=reference or None, kind=kind or None, images=images or None,
                            criteria=Criteria(conf_tolerance=tolerance, gate_share=gate_share), proxy=proxy,
                            budget=budget, calibration=calibration or None, held_out=held_out or None,
                            verify=verify or None, gate=None if gate < 0 else gate,
                            seed=seed, groups=groups, pool=pool or None, workers=workers, progress=ctx.say)
    ctx.note(f"phone repair: {res.summary()}")
    if res.random_error is not None:
        ctx.note(f"max |error| on one seeded random input (not the criterion): {res.random_error:.3g}")
    if res.noise_floor is not None:
        ctx.note(res.noise_floor.summary())
    for n in res.notes:
        ctx.note(n)
    ctx.note(f"time: {res.timing()}")
    if curve:
        from ncnnpass.passes.precision.pareto import write_curve

        chosen = next((p for p in res.search.points if p.placement == res.search.chosen), None)
        js, png = write_curve(curve, res.kind, res.search.points, chosen, threshold=tolerance if res.kind == "rec" else None,
                              title=f"{describe_target(target)}: fidelity vs fp16 share",
                              meta={"target": res.target, "searched_on": res.searched_on, "result": res.to_dict()})
        ctx.note(f"Pareto curve: {js}, {png}")
    if not res.reached:
        judged = res.deciding
        raise NcnnpassError(f"the model misses the criteria on {describe_target(res.target)} "
                            f"({'; '.join(judged.reasons) or 'not confirmed'}) even at "
                            f"{100 * res.fp16_share:.1f}% fp16; nothing written"
                            + (f" (the criteria are stricter than the model's own noise floor: "
                               f"{'; '.join(res.noise_floor.worst().reasons)} under one fp16 rounding of the input "
                               f"alone)" if res.noise_floor is not None and not res.noise_floor.ok else ""))
    apply_placement(graph, res.placement, copy=False)  # the same choices, written into this graph
    return len(res.placement)


PASS = FunctionPass(
    "repair-for-target",
    "keep the fewest MACs out of fp16 (per layer: fp16, 31=64, 31=1, 31=23; safe on every path) so that what users "
    "see matches the reference on held-out text (strings, confidence, det boxes; measured on the target; runs once)",
    repair_for_target, terminal=True,
    options={"target": Option("arm", "where: arm (emulated Cortex-A76), arm-a57, or vulkan (lavapipe)",
                              choices=("arm", "arm-a76", "arm-a57", "vulkan")),
             "tolerance": Option(5e-3, "largest accepted line-confidence change (rec) or score change (cls)", float),
             "reference": Option("", "an ONNX file to compare with (default: this model on x86, fp16 off)", str),
             "images": Option("", "the data: an image folder or a PaddleOCR label file (default: built-in)", str),
             "kind": Option("", "rec, det or cls (default: from the ONNX, else the output's shape)", str),
             "proxy": Option("auto", "arm: search on lavapipe and verify on the emulator (auto, vulkan) or "
                                     "search on the emulator (none)", choices=("auto", "vulkan", "none")),
             "budget": Option(600.0, "seconds the search may take (its optional phases stop then)", float),
             "calibration": Option(0, "calibration samples, the most fragile of the pool (0: 32 lines / 4 pages)", int),
             "pool": Option(0, "samples drawn for the calibration set to be picked from (0: 160 lines)", int),
             "held_out": Option(0, "held-out samples per confirmation on the search target (0: 24 lines / 2 pages)",
                                int),
             "verify": Option(0, "held-out samples run on the emulated phone (0: 8 lines / 2 pages)", int),
             "gate": Option(-1, "held-out lines the choice must pass on the search target, judged as a share "
                                "(-1: 200 lines, det none; 0: no gate)", int),
             "gate_share": Option(0.005, "the rate of lines changed for users (string or drop_score) the gate "
                                         "tests against: it fails a placement shown above it at 90% confidence",
                                  float),
             "seed": Option(0, "seed of the built-in data and of the split", int),
             "curve": Option("", "path prefix for the Pareto curve (PREFIX.json, PREFIX.png)", str),
             "groups": Option(16, "regions of the layer order the search keeps fp32 or lowers as one", int),
             "workers": Option(2, "parallel target workers", int)})
