"""Repair for a phone target, judged on what users see: :func:`repair_for_target`.

``target="arm"`` (the phone CPU, the emulated Cortex-A76) or ``"vulkan"`` (the phone GPU, lavapipe):

1. data: the user's ``images`` or the built-in lines/pages, a seeded calibration/held-out split
   (:mod:`.evaluator`); the reference is onnxruntime when an ONNX is given, else the same ncnn model on x86
   with fp16 off;
2. the search (:mod:`.search`) on the calibration part, on the target itself (``vulkan``: lavapipe is fast)
   or on a screening proxy that ranks placements as the target does (``arm``: lavapipe by default, an
   emulated inference costs 13-50 s per text line); NaN/Inf in the model as given are located first
   (:mod:`.sensitivity`) and the layers that overflow kept fp32;
3. the choice confirmed on held-out samples on the search target, then on its gate (200 more held-out lines,
   judged as a share: at most the goal's 0.5% of lines off, :class:`.criteria.Criteria`; a rate of changed
   lines a few dozen samples cannot see), and, with a proxy, on the target itself (``verify`` held-out
   samples: the reference's most fragile, then for rec and cls as many gate lines the choice came closest to
   changing on the proxy; each stands for the pool it was drawn from, :class:`.criteria.Criteria`); a choice
   that misses on a few samples of the target itself (lavapipe for ``vulkan``, the emulator) is first mended
   (:mod:`.mend`: the group or two kept fp32 that bring those samples back, judged on the others), else falls
   back to the next passing point of the walk with more fp32;
4. the report: the chosen placement and its fp16 MAC share (on the GPU for Vulkan: layers with bit 4 or
   without a Vulkan implementation run on the CPU), every evaluated point (the Pareto curve), the max
   error on one seeded random input (no longer the criterion), times (per phase; the refinement leaves the
   checks after it their expected time, one mend of the gate included, within the budget, which counts from
   the start: preparing the data too) and inference counts, and the
   reference's own noise floor on the calibration part (:mod:`.noise_floor`: what one fp16 rounding of the
   input alone does; a criterion stricter than that is named as such).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ncnnpass.ir import Graph, runtime
from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.ir.featmask import unsafe_edges
from ncnnpass.ir.runtime import Job, TargetPool, describe_target, normalize_target
from ncnnpass.passes.measure.dynamic_sizes import runs_at_other_widths
from ncnnpass.passes.measure.model_info import DEFAULT_SHAPES, VARIABLE_DIMS, ModelInfo

from .checks import (
    FRESH_GATE,
    confirm_held_out,
    judge_parts,
    pass_gate,
    unchosen,
    verify_on_target,
    winograd_is_the_loss,
)
from .criteria import Criteria, Verdict
from .evaluator import Evaluator, Part, at_risk, prepare_parts, reference_outputs, stressed
from .macs import macs_per_layer
from .noise_floor import NoiseFloor, input_noise_floor
from .placement import (
    ARITH,
    FP32,
    Placement,
    apply_placement,
    choices_for,
    existing_placement,
    fp16_share,
)
from .search import Budget, Point, Search, SearchResult, search

Progress = Callable[[str], None]
TARGETS = ("arm", "arm-a57", "vulkan")
PROXIES = ("auto", "none", "vulkan")
DEFAULT_BUDGET = 600.0
#: per kind (lines for rec and cls, pages for det): the calibration pool drawn and the calibration set the search
#: uses from it (the most fragile samples first, :func:`.evaluator.stressed`); held-out samples to confirm on the
#: search target (two rounds at most); the held-out pool the target's verification set is picked from (the most
#: fragile; the winograd check runs on it), and its size (rec, cls: then as many gate lines the choice comes closest
#: to changing on the proxy, :func:`.evaluator.at_risk`);
#: the gate: held-out samples on the search target judged as a share (:class:`.criteria.Criteria`; det: none, its
#: pages cost seconds each and F is already a share of boxes)
SENSITIVITY_SAMPLES = {"rec": 4, "cls": 8, "det": 1}
SIZES = {"rec": {"pool": 160, "calibration": 32, "confirm": 24, "verify_pool": 64, "verify": 8, "gate": 200},
         "cls": {"pool": 160, "calibration": 48, "confirm": 32, "verify_pool": 64, "verify": 16, "gate": 200},
         "det": {"pool": 4, "calibration": 4, "confirm": 2, "verify_pool": 2, "verify": 2, "gate": 0}}


@dataclass
class TargetRepairResult:
    graph: Graph  # the repaired model (placement written, safe on every path)
    placement: Placement  # the choices the search added (existing masks not included)
    target: str
    searched_on: str
    reference: str
    data: str
    kind: str
    fp16_share: float  # share of the MACs computed in fp16 (on the GPU for vulkan)
    reached: bool
    calibration: Verdict
    held_out: Verdict | None  # on the search target
    gate: Verdict | None  # the gate on the search target (hundreds of held-out samples, judged as a share)
    on_target: Verdict | None  # held-out samples on the target itself (when the search used a proxy)
    verified_samples: int
    search: SearchResult
    random_error: float | None  # max |target - reference| on one seeded random input, chosen placement
    seconds: float
    inferences: int
    forced: list[str] = field(default_factory=list)  # layers kept fp32 because their output overflows fp16
    notes: list[str] = field(default_factory=list)
    cpu_layers: list[str] = field(default_factory=list)  # vulkan: layers of the choice that run on the CPU
    noise_floor: NoiseFloor | None = None  # the reference under one fp16 rounding of its input (calibration part)
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase (:class:`Laps`), in order

    @property
    def layers_marked(self) -> list[str]:
        return [n for n, _ in self.placement.items]

    @property
    def deciding(self) -> Verdict:
        """The verdict that decided: the first that failed, from the target down to the calibration; else the
        target's (or the last judged)."""
        order = [v for v in (self.on_target, self.gate, self.held_out, self.calibration) if v is not None]
        return next((v for v in order if not v.ok), order[0])

    def summary(self) -> str:
        judged = self.on_target or self.held_out or self.calibration
        where = "held-out on the target" if self.on_target else "held-out" if self.held_out else "calibration"
        return (f"{describe_target(self.target)}: {self.placement.describe()} "
                f"({100 * self.fp16_share:.1f}% of MACs in fp16{' on the GPU' if self.target == 'vulkan' else ''}); "
                f"{where} ({judged.samples}): {judged.headline()}; "
                + (f"held-out on {describe_target(self.searched_on)} ({self.held_out.samples}): "
                   f"{self.held_out.headline()}; " if self.on_target and self.held_out else "")
                + (f"gate on {describe_target(self.searched_on)} ({self.gate.samples}): {self.gate.headline()}; "
                   if self.gate else "")
                + f"{'criteria met' if self.reached else 'criteria NOT met'}; searched on "
                f"{describe_target(self.searched_on)} against {self.reference} in {self.seconds:.0f} s")

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "searched_on": self.searched_on, "reference": self.reference,
                "data": self.data, "kind": self.kind, "placement": self.placement.as_dict(),
                "fp16_share": self.fp16_share, "reached": self.reached,
                "calibration": self.calibration.to_dict(),
                "held_out": self.held_out.to_dict() if self.held_out else None,
                "gate": self.gate.to_dict() if self.gate else None,
                "on_target": self.on_target.to_dict() if self.on_target else None,
                "verified_samples": self.verified_samples, "random_error": self.random_error,
                "seconds": self.seconds, "inferences": self.inferences, "forced": self.forced, "notes": self.notes,
                "cpu_layers": self.cpu_layers, "search": self.search.to_dict(),
                "noise_floor": self.noise_floor.to_dict() if self.noise_floor else None, "phases": self.phases}

    def timing(self) -> str:
        """Where the time went: ``data 14 s, search 191 s, ...`` (phases of a second or more)."""
        return ", ".join(f"{k} {v:.0f} s" for k, v in self.phases.items() if v >= 1) or "under a second"


#: the phases of :func:`repair_for_target`, in order: the samples and their references; the workers started, the
#: model as given judged and NaN/Inf located; the target's winograd check; the search; the held-out confirmation;
#: the gate; the verification on the target (mending and steps back included); the random-input check; the floor
PHASES = ("data", "as given", "winograd check", "search", "confirm", "gate", "on target", "random check",
          "noise floor")


class Laps:
    """Seconds per phase (:data:`PHASES`), each lap ending at the call that names it."""

    def __init__(self, start: float) -> None:
        self.last = start
        self.phases: dict[str, float] = {}

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.last
        self.last = now


#: an emulated ARM inference costs about this many lavapipe ones (PP-OCRv3 rec: ~15 s against ~0.6 s)
EMULATION_FACTOR = 25.0


def checks_cost(ev: Evaluator, tev: Evaluator | None, search_samples: int, target_samples: int,
                random_check: bool, gate: int = 0, fresh: int = 0) -> float:
    """Seconds the checks after the search should take, from the wall time per sample measured so far: the
    held-out confirmation on the search target (``search_samples``), the ``gate`` and one mend of it (a
    miss on a few of its lines is mended and judged again on the others: PP-OCRv5 on lavapipe, 194 s for a gate
    foreseen at ~90 s; then on ``fresh`` lines), the verification on the target (``target_samples``; per sample
    as measured by the winograd check, else :data:`EMULATION_FACTOR` times the search target's) and the
    random-input check. Other mends and steps back are not foreseen (they stop when the budget is spent, after a
    minimum of tries)."""
    per = ev.seconds / ev.inferences if ev.inferences else 0.0
    if tev is None:  # the search target is the target
        per_target = per
    else:
        per_target = tev.seconds / tev.inferences if tev.inferences else EMULATION_FACTOR * per
    return per * (search_samples + 2 * gate + fresh) + per_target * (target_samples + (1 if random_check else 0))


def guess_info(graph: Graph, kind: str | None = None) -> ModelInfo:
    """The model facts when there is no ONNX: ``kind`` (else guessed from the output's shape at the default
    input), the kind's default input shape, no dictionary (strings compared as class ids)."""
    if kind is None:
        shapes = runtime.infer_shapes(graph, DEFAULT_SHAPES[None], target="isolated")
        out = shapes.get(graph.outputs[0], ())
        if len(out) == 3 and out[0] == 1:
            kind = "det"
        elif len(out) == 2 and out[-1] > 8:
            kind = "rec"
        elif out and int(np.prod(out)) <= 8:
            kind = "cls"
        else:
            raise NcnnpassError(f"cannot tell whether the model is rec, det or cls from its output "
                                f"{'x'.join(map(str, out))}: give the kind (or an ONNX)")
    if kind not in DEFAULT_SHAPES or kind is None:
        raise NcnnpassError(f"unknown model kind {kind!r} (rec, det or cls)")
    return ModelInfo(kind, DEFAULT_SHAPES[kind], VARIABLE_DIMS[kind], sources=["the ncnn model's output"])


def first_nonfinite(graph: Graph, feeds: dict[str, np.ndarray], pool: TargetPool) -> str | None:
    """The first layer (graph order) whose output is NaN/Inf when ``graph`` runs on ``pool`` (every blob kept)."""
    (res,) = pool.run([Job(graph, [feeds], list(graph.blobs))])
    if not res.ok:
        raise NcnnpassError(f"{describe_target(pool.name)}: the model fails while locating NaN/Inf: {res.error}")
    blobs = res.outputs[0]
    for ly in graph.layers:
        if any(o in blobs and not np.all(np.isfinite(blobs[o])) for o in ly.outputs):
            return ly.name
    return None


def overflow_layers(graph: Graph, base: Placement, feeds: dict[str, np.ndarray], pool: TargetPool,
                    say: Progress, rounds: int = 8) -> list[str]:
    """Layers to keep fp32 because fp16 overflows there: the first layer whose output is NaN/Inf and its readers
    (an fp32 blob read by an fp16 layer is cast back to fp16), again until the net is finite (``rounds`` at most)."""
    forced: list[str] = []
    for _ in range(rounds):
        name = first_nonfinite(apply_placement(graph, base.merged(dict.fromkeys(forced, FP32))), feeds, pool)
        if name is None or name in forced:
            break
        say(f"  first NaN/Inf at layer {name}")
        forced.append(name)
        for blob in graph.layer(name).outputs:
            forced += [c.name for c in graph.blobs[blob].consumers if c.name not in forced]
    return forced


def _random_error(graph: Graph, pool: TargetPool, info: ModelInfo, onnx: str | None, reference_graph: Graph
                  ) -> float | None:
    from ncnnpass.passes.measure.inputs import seeded_inputs
    from ncnnpass.passes.measure.tolerance import max_abs_error

    feeds = seeded_inputs({graph.inputs[0]: info.input_shape}, 0)
    x = feeds[graph.inputs[0]]
    if onnx is not None:
        from ncnnpass.passes.measure.onnx_runner import OnnxRunner

        ref = OnnxRunner.cached(onnx, num_threads=1).run_list(x)[0]
    else:
        ref = runtime.run(reference_graph, feeds, [reference_graph.outputs[0]], options="fp32")[reference_graph.outputs[0]]
    (res,) = pool.run([Job(graph, [feeds], [graph.outputs[0]])])
    if not res.ok:
        return float("inf")
    got = next(iter(res.outputs[0].values()))
    if got.size != ref.size:
        return None
    return max_abs_error([ref.reshape(-1)], [got.reshape(-1)])


def repair_for_target(graph: Graph, target: str = "arm", *, onnx: str | os.PathLike | None = None,
                      info: ModelInfo | None = None, kind: str | None = None, images: str | os.PathLike | None = None,
                      criteria: Criteria | None = None, proxy: str = "auto", calibration: int | None = None,
                      held_out: int | None = None, verify: int | None = None, gate: int | None = None, seed: int = 0,
                      groups: int | None = None, budget: float | None = DEFAULT_BUDGET, workers: int = 2,
                      model_dir: str | os.PathLike | None = None, random_check: bool = True,
                      noise_floor: bool = True, pool: int | None = None, progress: Progress | None = None
                      ) -> TargetRepairResult:
    """The placement with the most MACs in fp16 whose task metrics match the reference on held-out data
    (module docstring). ``graph`` is not modified; featmasks it already carries are kept.

    ``proxy`` (arm only): ``auto``/``vulkan`` searches on lavapipe and verifies on the emulator, ``none``
    searches on the emulator itself. ``calibration``: samples the search judges on, the most fragile of a
    ``pool`` drawn (default :data:`SIZES`). ``held_out``: samples per confirmation round on the search target;
    ``verify``: held-out samples (others again) run on the target after a proxy search; ``gate``: held-out samples
    (others again) the choice must pass on the search target, judged as a share (0: none). ``budget``: seconds
    for the whole repair (the optional phases stop when it is spent; the mandatory ones run anyway).
    ``noise_floor``: also measure the reference's own noise floor on the calibration part
    (:mod:`.noise_floor`), reported, and named when the criteria are stricter than it."""
    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    target = normalize_target(target)
    if target not in ("arm", "arm-a57", "vulkan"):
        raise NcnnpassError(f"repair-for-target repairs for a phone target (arm, arm-a57, vulkan), not {target!r}")
    if proxy not in PROXIES:
        raise NcnnpassError(f"proxy must be one of {', '.join(PROXIES)}, not {proxy!r}")
    if len(graph.inputs) != 1:
        raise NcnnpassError(f"repair-for-target needs a single-input model (this one has {graph.inputs})")
    criteria = criteria or Criteria()
    onnx = os.fspath(onnx) if onnx is not None else None
    if info is None:
        if onnx is not None:
            from ncnnpass.passes.measure.model_info import read_model_info

            info = read_model_info(model_dir or onnx, onnx)
            if kind is not None:
                info.kind = kind
        else:
            info = guess_info(graph, kind)
    searched_on = target if target == "vulkan" or proxy == "none" else "vulkan"
    reference = f"onnxruntime ({Path(onnx).name})" if onnx else "ncnn on x86, fp16 off"
    say(f"repair for {describe_target(target)}: searching on {describe_target(searched_on)} against {reference}")
    if info.kind == "rec" and info.dynamic[1] and not runs_at_other_widths(graph, tuple(info.input_shape)):
        info = replace(info, dynamic=(info.dynamic[0], False))
        say(f"  the ncnn model runs at width {info.input_shape[2]} only (its Reshapes are sized for it): "
            f"lines are fitted to that width")
    size = SIZES[info.kind]
    confirm_n = held_out or size["confirm"]
    verify_n = (verify or size["verify"]) if searched_on != target else 0
    cal_n = calibration or size["calibration"]
    gate_n = size["gate"] if gate is None else gate
    verify_pool = max(verify_n, min(size["verify_pool"], pool or 10**9)) if verify_n else 0
    parts = prepare_parts(info, images=images, calibration=max(cal_n, pool or size["pool"]),
                          held_out=2 * confirm_n + verify_pool + 2 * gate_n, seed=seed, model_dir=model_dir)
    ref_graph = graph.copy()
    for part in parts.values():
        part.references = reference_outputs(part.inputs, onnx=onnx, graph=None if onnx else ref_graph)
    held_all = parts["held-out"]
    cal_part = stressed(info.kind, parts["calibration"], cal_n, "calibration")
    confirm = held_all.slice("confirm", 0, confirm_n)
    confirm2 = held_all.slice("confirm-2", confirm_n, 2 * confirm_n)
    check = None
    if verify_n:
        rest = held_all.slice("verify", 2 * confirm_n, 2 * confirm_n + verify_pool)
        drawn = rest if len(rest) else held_all
        # the most fragile of the pool stand for it: judged as the gate would judge the pool (criteria)
        check = replace(stressed(info.kind, drawn, verify_n, "verify"), pool=len(drawn))
    gate_at = 2 * confirm_n + verify_pool
    gate_part = held_all.slice("gate", gate_at, gate_at + gate_n)
    fresh_gate = held_all.slice(FRESH_GATE, gate_at + gate_n, gate_at + 2 * gate_n)  # a gate mend is judged on
    lap = Laps(t0)
    lap("data")
    work = {"calibration": cal_part, "confirm": confirm, "confirm-2": confirm2, "calibration+confirm": cal_part + confirm,
            "gate": gate_part, FRESH_GATE: fresh_gate}
    unit = "pages" if info.kind == "det" else "lines"
    picked = f" (the most fragile of {len(parts['calibration'])})" if info.kind != "det" else ""
    data = (f"{cal_part.source}: {len(cal_part)} calibration {unit}{picked}, held-out "
            f"{len(confirm)} + {len(confirm2)}" + (f" + a gate of {len(gate_part)}" if len(gate_part) else "")
            + (f" (+ {len(fresh_gate)} fresh for a mend of it)" if len(fresh_gate) else "")
            + f" on {searched_on}" + (f", {len(check)} on {target}" + (
                " (the most fragile; then as many gate lines the choice comes closest to changing)"
                if info.kind != "det" and len(gate_part) else " (the most fragile)" if picked else "") if check else ""))
    say(f"  data: {data}")
    # MACs at the model's default input (3x48x320 for rec): shares at other widths differ a little (attention)
    macs = macs_per_layer(graph, runtime.infer_shapes(graph, tuple(info.input_shape), target="isolated"))
    base = existing_placement(graph)
    candidates = [ly.name for ly in graph.layers if ly.type not in ("Input", "MemoryData") and ly.inputs
                  and FP32 in choices_for(ly, target)]
    # the budget bounds the whole repair: preparing the data (rendering, references) counts too
    clock = Budget(None if budget is None else budget - (time.perf_counter() - t0))
    notes: list[str] = []
    forced: list[str] = []
    with ExitStack() as stack:
        runners = stack.enter_context(TargetPool(searched_on, workers))
        ev = Evaluator(graph, info.kind, work, runners, criteria=criteria, dictionary=info.dictionary, progress=say)
        tev = None
        if check is not None:  # the target itself, for the winograd check and the verification
            tpool = stack.enter_context(TargetPool(target, workers))
            tev = Evaluator(graph, info.kind, {"verify": check}, tpool, criteria=criteria,
                            dictionary=info.dictionary, progress=say)
        # the checks after the search judge the calibration lines as held-out ones: each run judges both
        unchosen(ev, ["calibration", "calibration+confirm"])
        (as_given,) = ev.evaluate([base])
        if as_given.nonfinite:
            say(f"  the model as given returns NaN/Inf on {as_given.nonfinite} samples: locating the overflow")
            bad = (ev.nonfinite_samples(base) or [0])[0]
            feeds = {graph.inputs[0]: cal_part.inputs[bad].tensor[0]}
            forced = overflow_layers(graph, base, feeds, runners, say)
            base = base.merged(dict.fromkeys(forced, FP32))
            notes.append(f"fp16 overflow: kept {len(forced)} layer(s) fp32 first ({', '.join(forced[:6])})")
        lap("as given")
        no_winograd = tev is not None and winograd_is_the_loss(tev, graph, base, candidates, notes, say, macs)
        lap("winograd check")
        # the refinement ends early enough for the checks after it to end within the budget
        # the target verifies the choice on the reference's most fragile lines and, for rec and cls, on the gate's
        # lines the choice came closest to changing on the proxy: a noisier target changes those first
        risky = tev is not None and info.kind in ("rec", "cls") and len(gate_part) > 0
        target_n = (len(check) if check else 0) * (2 if risky else 1)
        vparts = ["verify"]  # the target's verification parts (the gate's riskiest lines added after the gate)

        # (re-estimated at each look: the first evaluations' cost includes starting the workers)
        def reserve() -> float:
            return checks_cost(ev, tev, len(confirm), target_n, random_check, gate=len(gate_part),
                               fresh=len(fresh_gate))

        search_clock = clock.less(reserve)
        if budget is not None:
            say(f"  the search keeps ~{reserve():.0f} s of the {budget:.0f} s budget for the checks after it")
        cpu: set[str] = set()
        if searched_on == "vulkan":
            cpu = {n for n, _ in runners.sessions[0].cpu_layers(graph)}

        def share_of(p: Placement) -> float:
            return fp16_share(macs, p, gpu=target == "vulkan", cpu_layers=cpu)

        state: list[Search] = []
        arith = [n for n in candidates if ARITH in choices_for(graph.layer(n), target)] if target == "vulkan" else []
        result = search(ev, graph, candidates, macs, base=base, groups=groups or 16, workers=workers,
                        budget=search_clock, share_of=share_of, progress=say, state=state, arith_choices=arith,
                        sensitivity_samples=SENSITIVITY_SAMPLES[info.kind], no_winograd=no_winograd)
        s = state[0]
        if budget is not None:
            say(f"  kept {reserve():.0f} s for the checks after the search")
        lap("search")
        chosen, cal, held, gated = result.chosen, result.chosen_verdict, None, None
        # what a step back must pass on the search target: what the choice passed there (and then the gate); the
        # last is the held-out part its held-out verdict is on
        passed = unchosen(ev, ["calibration", *(["confirm"] if len(confirm) else [])])
        reached = result.reached
        if reached and len(confirm):
            chosen, cal, held, passed = confirm_held_out(ev, s, chosen, cal, confirm2, clock, notes, say)
            reached = held.ok
        lap("confirm")
        if reached and len(gate_part):
            before = chosen
            # mended on a proxy too: stepping back along the walk gives up the refinement's whole gain (PP-OCRv4:
            # 85.0% -> 52.6% or less), and the target verifies the mended choice on two sets of lines after
            chosen, cal, gated = pass_gate(ev, s, chosen, cal, clock, notes, say, passed)
            reached = gated.ok
            if chosen != before and len(confirm):
                (held,) = ev.evaluate([chosen], passed[-1])
                reached = reached and held.ok
        lap("gate")
        on_target = None
        random_error = None
        if tev is not None and reached:
            gpu_check = None
            if searched_on == "vulkan" and len(confirm):  # the file must stay right on the phone's GPU too
                def gpu_check(p: Placement) -> Verdict:
                    return judge_parts(ev, p, [*passed, *(["gate"] if len(gate_part) else [])])
            if risky:
                (at,) = ev.evaluate([chosen], "gate")  # cached unless the gate mended the choice
                if len(at.risks) == len(gate_part):
                    # judged as the gate is (a part named gate*: strings and drop_score, none off on 8 lines):
                    # these are the gate's extreme lines, where a confidence change measures the noise floor
                    # (PP-OCRv4's 8 riskiest moved by 3.9e-2 on the A76 with every string right)
                    tev.parts["gate-at-risk"] = at_risk(info.kind, gate_part, at, verify_n, "gate-at-risk")
                    vparts.append("gate-at-risk")
                    say(f"  verifying on {describe_target(target)} on the {len(check)} most fragile held-out lines "
                        f"and the {len(tev.parts['gate-at-risk'])} gate lines the choice comes closest to changing "
                        f"on {describe_target(searched_on)}")
            before = chosen
            chosen, cal, on_target = verify_on_target(tev, s, chosen, cal, clock, notes, say, gpu_check, vparts)
            reached = on_target.ok
            if gpu_check is not None and chosen != before:
                (held,) = ev.evaluate([chosen], passed[-1])
                say(f"  held-out ({held.samples}) on {describe_target(searched_on)}: {held.headline()}")
                reached = reached and held.ok
                if len(gate_part):
                    (gated,) = ev.evaluate([chosen], "gate")
                    reached = reached and gated.ok
            lap("on target")
        if random_check:
            rpool = tev.pool if tev is not None else stack.enter_context(TargetPool(target, 1))
            random_error = _random_error(apply_placement(graph, chosen), rpool, info, onnx, ref_graph)
            lap("random check")
        inferences = ev.inferences + (tev.inferences if tev is not None else 0)
        seconds_on_search = ev.seconds
        result.chosen, result.chosen_verdict, result.fp16_share = chosen, cal, share_of(chosen)
    floor = None
    if noise_floor:
        floor = input_noise_floor(cal_part, info.kind, onnx=onnx, graph=None if onnx else ref_graph,
                                  criteria=criteria, dictionary=info.dictionary)
        say(f"  {floor.summary()}")
        lap("noise floor")
    repaired = apply_placement(graph, chosen)
    bad = unsafe_edges(repaired)
    if bad:  # apply_placement guarantees none; a failure here is a bug, not bad input
        raise NcnnpassError(f"the repair left an unsafe featmask edge at {bad[0][0].name}: {bad[0][2]}")
    given = existing_placement(graph)
    added = Placement(tuple((n, c) for n, c in chosen.items if given.choice(n) != c))
    cpu_now = sorted({n for n in cpu if macs.get(n, 0)} | set(chosen.names(FP32))) if target == "vulkan" else []
    out = TargetRepairResult(repaired, added, target, searched_on, reference, data, info.kind, share_of(chosen),
                             reached, cal, held, gated, on_target, sum(len(tev.parts[p]) for p in vparts) if tev else 0, result, random_error,
                             time.perf_counter() - t0, inferences, forced, list(dict.fromkeys([*notes, *result.notes, *s.notes])),
                             cpu_now, floor, dict(lap.phases))
    say(out.summary())
    say(f"  {inferences} inferences; {seconds_on_search:.0f} s of them on {describe_target(searched_on)}; "
        f"time: {out.timing()}")
    return out


#: the quick search ``compare --repair`` runs (the full one: ``run --pipeline repair --target arm``)
QUICK = {"calibration": 8, "pool": 32, "held_out": 4, "verify": 2, "gate": 0, "groups": 8, "budget": 120.0,
         "random_check": False, "noise_floor": False}


def repair_for_phone(graph: Graph, shape: Sequence[int] | None = None, tolerance: float = 5e-3,
                     target: str = "arm", reference: str | os.PathLike | None = None, workers: int = 2,
                     progress: Progress | None = None, **options: Any) -> TargetRepairResult:
    """:func:`repair_for_target` under its former name, with the small data of :data:`QUICK` unless ``options``
    say otherwise: ``tolerance`` is the line-confidence tolerance and ``reference`` the ONNX file (``shape`` is
    no longer needed: the data sets the shapes)."""
    return repair_for_target(graph, target, onnx=reference, criteria=Criteria(conf_tolerance=tolerance),
                             workers=workers, progress=progress, **{**QUICK, **options})


__all__ = ["TargetRepairResult", "repair_for_target", "repair_for_phone", "guess_info", "Part", "Point"]
