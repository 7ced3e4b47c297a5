"""Repair for the phone: keep the fewest layers out of fp16 that bring the ARM error within a tolerance.

1. one round on the target: the net as is (error before) and with every candidate kept fp32 (the floor);
2. sensitivity: one all-blob run plus every layer alone on reference inputs
   (:mod:`ncnnpass.passes.precision.sensitivity`), ranked by error per MAC;
3. the shortest prefix of that ranking whose placement verifies within ``tolerance``
   (:mod:`ncnnpass.passes.precision.search`), every placement made ARM-safe first
   (:mod:`ncnnpass.ir.featmask`);
4. the chosen model run on held-out inputs; if it misses there, the search resumes with them included.

The reference is onnxruntime when an ONNX file (or a callable) is given, else the same ncnn model on this
machine with fp16/bf16 off. Inputs are seeded uniform [-1, 1] of ``shape``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ncnnpass.ir import Graph, runtime
from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.ir.featmask import unsafe_edges
from ncnnpass.ir.runtime import TargetPool
from ncnnpass.passes.measure.inputs import seeded_inputs
from ncnnpass.passes.measure.onnx_runner import OnnxRunner
from ncnnpass.passes.measure.runners import NcnnRunner

from .macs import fp16_mac_share, macs_per_layer
from .search import cut_points, evaluate, shortest_prefix, with_fp32_layers
from .sensitivity import Sensitivity, measure, ranking

Reference = Callable[[Mapping[str, np.ndarray]], Sequence[np.ndarray]]
DEFAULT_TOLERANCE = 1e-3
ORDERS = ("suffix", "sensitivity")


def search_order(graph: Graph, candidates: Sequence[str], macs: Mapping[str, int], order_by: str,
                 sens: Sensitivity | None) -> list[str]:
    """The order in which layers are kept fp32: overflowing layers first, then by ``order_by``."""
    order_all = [ly.name for ly in graph.layers]
    local = {n: sens.local.get(n, 0.0) for n in candidates} if sens else {}
    if order_by == "sensitivity" and sens:
        return ranking(local, macs, order_all)
    overflow = [n for n in candidates if not np.isfinite(local.get(n, 0.0))]
    return overflow + [n for n in reversed(candidates) if n not in overflow]


@dataclass
class PhoneRepairResult:
    graph: Graph  # the repaired model (featmask placed, ARM-safe), verified on the target
    layers_marked: list[str]
    error_before: float  # max |target − reference| on the verification inputs, model as given
    error_after: float  # same, repaired model
    heldout_error: float  # repaired model on inputs not used by the search
    fp16_mac_share: float  # share of the MACs still in fp16
    seconds: float
    tolerance: float
    reached: bool  # error_after and heldout_error within tolerance
    fp32_floor: float  # error with every candidate kept fp32
    reference: str  # what the error is measured against
    target: str
    first_nonfinite: str | None = None  # first layer whose output was NaN/Inf before the repair
    target_runs: int = 0
    probes: list[tuple[int, float, float]] = field(default_factory=list)  # (layers fp32, error, fp16 MAC share)

    def summary(self) -> str:
        return (f"{self.target}: max error {self.error_before:.3g} -> {self.error_after:.3g} "
                f"(held-out {self.heldout_error:.3g}, tolerance {self.tolerance:g}, vs {self.reference}); "
                f"{len(self.layers_marked)} layer(s) kept fp32, {100 * self.fp16_mac_share:.1f}% of MACs in fp16, "
                f"{self.seconds:.0f} s")


def onnx_reference(onnx_path: str | Path) -> Reference:
    """onnxruntime on ``onnx_path`` (a warm :class:`~ncnnpass.passes.measure.onnx_runner.OnnxRunner`)."""
    runner = OnnxRunner.cached(onnx_path)

    def run(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return runner.run_list(feeds)

    return run


def ncnn_fp32_reference(graph: Graph) -> Reference:
    """The model itself on this machine with fp16/bf16 off."""
    runner = NcnnRunner(graph, target="x86", options="fp32", num_threads=None)

    def run(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        out = runner.run(dict(feeds))
        return [out[n] for n in graph.outputs]

    return run


def make_inputs(graph: Graph, shape: tuple[int, ...], seeds: Sequence[int]) -> list[dict[str, np.ndarray]]:
    if len(graph.inputs) != 1:
        raise NcnnpassError(f"repair_for_phone needs a single-input model (this one has {graph.inputs})")
    return [seeded_inputs({graph.inputs[0]: shape}, s) for s in seeds]


def repair_for_phone(graph: Graph, shape: tuple[int, ...], tolerance: float = DEFAULT_TOLERANCE,
                     target: str = "arm", reference: str | Path | Reference | None = None,
                     progress: Callable[[str], None] | None = None, verify_seeds: Sequence[int] = (0,),
                     heldout_seeds: Sequence[int] = (101, 102), workers: int = 2,
                     order_by: str = "suffix") -> PhoneRepairResult:
    """Keep a small set of layers out of fp16 (featmask ``31=7``) so the ``target`` error is within
    ``tolerance`` on the verification and held-out inputs. ``graph`` is not modified; featmasks it already
    carries are kept (made ARM-safe, also for the "before" measurement).

    ``order_by``: ``"suffix"`` searches the shortest tail of the net (contiguous fp32 regions need few cast
    boundaries); ``"sensitivity"`` ranks layers by isolated fp16 error per MAC. Either way layers whose
    isolated output is NaN/Inf (fp16 overflow) come first."""
    if not tolerance > 0:
        raise NcnnpassError(f"the tolerance must be positive, not {tolerance}")
    if order_by not in ORDERS:
        raise NcnnpassError(f"order_by must be one of {', '.join(ORDERS)}, not {order_by!r}")
    start = time.perf_counter()
    say = progress or (lambda _msg: None)
    shape = tuple(int(d) for d in shape)
    if isinstance(reference, (str, Path)):
        ref_fn, ref_name = onnx_reference(reference), f"onnxruntime ({Path(reference).name})"
    elif reference is None:
        ref_fn, ref_name = ncnn_fp32_reference(graph), "ncnn on this machine, fp16 off"
    else:
        ref_fn, ref_name = reference, "the given reference"
    samples, held = make_inputs(graph, shape, verify_seeds), make_inputs(graph, shape, heldout_seeds)
    refs, held_refs = [ref_fn(s) for s in samples], [ref_fn(s) for s in held]
    macs = macs_per_layer(graph, runtime.infer_shapes(graph, shape))
    candidates = [ly.name for ly in graph.layers if ly.type not in ("Input", "MemoryData") and ly.inputs]

    with TargetPool(target, workers) as pool:
        say(f"phone repair on {target}: the model as given and all {len(candidates)} layers fp32")
        (before, fail0), (floor, fail1) = evaluate(graph, [[], candidates], samples, refs, pool, say)
        if fail1:
            raise NcnnpassError(f"{target}: the model with every layer kept fp32 fails: {fail1}")
        say(f"  before {before:.3g}{' (' + fail0 + ')' if fail0 else ''}, all fp32 {floor:.3g}")
        sens = None
        if order_by == "sensitivity" or not np.isfinite(before):
            sens = measure(graph, samples[0], pool, progress=say)
            if sens.first_nonfinite:
                say(f"  first NaN/Inf at layer {sens.first_nonfinite}")
        order = search_order(graph, candidates, macs, order_by, sens)
        cuts = cut_points(order, macs)
        if before <= tolerance:
            k, probes = 0, []
        else:
            k, probes = shortest_prefix(graph, order, tolerance, samples, refs, pool, cuts=cuts, progress=say)
        chosen = order[:k]
        best = with_fp32_layers(graph, chosen)
        after = next((p.error for p in probes if p.k == k), floor if k == len(order) else before)
        (held_err, held_fail), = evaluate(graph, [chosen], held, held_refs, pool, say)
        if held_err > tolerance and k < len(order):
            say(f"  held-out error {held_err:.3g} misses; searching again with the held-out inputs included")
            k, more = shortest_prefix(graph, order, tolerance, samples + held, refs + held_refs, pool, lo=k,
                                      cuts=cuts, progress=say)
            probes += more
            chosen = order[:k]
            best = with_fp32_layers(graph, chosen)
            (after, _), (held_err, held_fail) = evaluate(graph, [chosen], samples, refs, pool, say) + \
                evaluate(graph, [chosen], held, held_refs, pool, say)
        runs = pool.runs
    bad = unsafe_edges(best)
    if bad:  # make_featmask_safe guarantees none; a failure here is a bug, not bad input
        raise NcnnpassError(f"phone repair left an unsafe featmask edge at {bad[0][0].name}: {bad[0][2]}")
    if held_fail:
        raise NcnnpassError(f"{target}: the repaired model failed on held-out inputs: {held_fail}")
    reached = after <= tolerance and held_err <= tolerance
    tried = [(p.k, p.error, fp16_mac_share(macs, set(order[:p.k]))) for p in probes]
    result = PhoneRepairResult(best, list(chosen), before, after, held_err, fp16_mac_share(macs, set(chosen)),
                               time.perf_counter() - start, tolerance, reached, floor, ref_name, target,
                               sens.first_nonfinite if sens else None, runs, tried)
    say(result.summary())
    return result
