"""The mixed-precision search: the placement with the most MACs in fp16 whose task metrics pass.

AIMET's AMP scheme adapted to ncnn's featmask (docs/phone.md, "The search"):

1. **Ends**: the model as given and with every candidate layer fp32 (``31=23``: the floor). NaN/Inf in the
   first is located and fixed first (the caller passes ``forced`` layers); a floor that fails ends the
   search (nothing reaches the criteria).
2. **Groups**: contiguous regions of the layer order, each closed when it holds about ``1 / groups`` of the
   MACs (or of the MAC-carrying layers); the layers after the last MAC-carrying layer (the head's
   Softmax, ...) form a group of their own, and so does the first layer. Regions, not tails: any union of
   groups can be kept fp32.
3. **Sensitivity** (AMP phase 1): each group alone lowered to fp16 in the floor, on a few calibration
   samples; its harm is the continuous output change it adds (:attr:`.criteria.Verdict.smooth`: changed
   strings are too rare on a few samples to rank with). A group with 3x3 stride-1 convolutions is also tried with
   winograd off (``31=64``) and keeps whichever option harms less.
4. **Pareto walk** (AMP phase 2): groups lowered one after another, least harm per MAC first; the walk's
   points run from the floor to everything lowered. The last passing point is found by a search over the
   walk (``workers`` probes per round), on every calibration sample.
5. **Refinement** while the budget lasts: the groups the walk left fp32 are tried lowered on top of the
   choice, in walk order, in runs that double while they pass and halve when they miss (group testing: a
   single group that misses stays fp32); then the halves of those that stayed fp32, down to single layers;
   then the MAC-free groups in fp16 (fewer casts), and on Vulkan the fp32 layers as ``31=1`` (fp32
   arithmetic on fp16 storage: they stay on the GPU). A choice that later misses steps back along the
   refinement first (:func:`.checks.step_back`).

Every evaluated placement is a point of the Pareto curve (fp16 MAC share, score, ok). The evaluator is
anything with ``evaluate(placements, part, count) -> [Verdict]`` (:class:`.evaluator.Evaluator`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ncnnpass.ir import Graph

from .criteria import Verdict
from .placement import (
    ARITH,
    FP16,
    FP32,
    NOWINO,
    Placement,
    apply_placement,
    fp16_share,
    winograd_eligible,
    winograd_in_fp16,
)

Progress = Callable[[str], None]
DEFAULT_GROUPS = 16
SENSITIVITY_SAMPLES = 4


class PlacementEvaluator(Protocol):
    def evaluate(self, placements: Sequence[Placement], part: str = "calibration",
                 count: int | None = None) -> list[Verdict]: ...


@dataclass
class Group:
    """A contiguous region of the layer order."""

    layers: list[str]
    macs: int
    winograd: list[str] = field(default_factory=list)  # 3x3 stride-1 convolutions in it
    lowered: str = FP16  # the option the sensitivity phase chose: fp16, or nowino on its winograd convs
    harm: float = 0.0

    @property
    def name(self) -> str:
        return self.layers[0] if len(self.layers) == 1 else f"{self.layers[0]}..{self.layers[-1]}"

    def low(self) -> dict[str, str]:
        """The choices of this group when lowered."""
        out = dict.fromkeys(self.layers, FP16)
        if self.lowered == NOWINO:
            out.update(dict.fromkeys(self.winograd, NOWINO))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"layers": self.layers, "macs": self.macs, "winograd": self.winograd, "lowered": self.lowered,
                "harm": self.harm}


def make_groups(graph: Graph, candidates: Sequence[str], macs: Mapping[str, int], groups: int = DEFAULT_GROUPS
                ) -> list[Group]:
    """Contiguous regions of ``candidates`` (in graph order), see the module docstring."""
    order = [ly.name for ly in graph.layers if ly.name in set(candidates)]
    total = sum(macs.get(n, 0) for n in order) or 1
    carriers = [n for n in order if macs.get(n, 0) > 0]
    if not carriers:
        return [Group(order, 0)] if order else []
    last = order.index(carriers[-1])
    body, tail = order[:last + 1], order[last + 1:]
    per_count = max(1, -(-len(carriers) // groups))
    out: list[Group] = []
    cur: list[str] = []
    cur_macs = cur_count = 0
    for i, n in enumerate(body):
        m = macs.get(n, 0)
        if m > 0 and cur and cur_count > 0 and (cur_macs + m > total / groups or cur_count >= per_count
                                                 or len(out) == 0 and cur_count >= 1):
            out.append(Group(cur, cur_macs))
            cur, cur_macs, cur_count = [], 0, 0
        cur.append(n)
        cur_macs += m
        cur_count += m > 0
        if i == len(body) - 1:
            out.append(Group(cur, cur_macs))
    if tail:
        out.append(Group(tail, 0))
    for g in out:
        g.winograd = [n for n in g.layers if winograd_eligible(graph.layer(n))]
    return out


def halves(group: Group, macs: Mapping[str, int]) -> list[Group]:
    """``group`` cut in two contiguous parts of about half its MACs each (the layers before the cut's first
    MAC-carrying layer go with the first part); the parts that carry MACs. A group with one MAC-carrying layer
    is not cut (nothing smaller lowers any of its MACs)."""
    carriers = [n for n in group.layers if macs.get(n, 0) > 0]
    if len(carriers) < 2:
        return []
    total, run, cut = group.macs, 0, 1
    for i, n in enumerate(group.layers):
        run += macs.get(n, 0)
        if run * 2 >= total:
            cut = i + 1
            break
    if not any(macs.get(n, 0) for n in group.layers[cut:]):  # one layer holds most of the MACs: cut before it
        cut = group.layers.index(carriers[-1])
    out = []
    for part in (group.layers[:cut], group.layers[cut:]):
        m = sum(macs.get(n, 0) for n in part)
        if m:
            out.append(Group(part, m, [n for n in part if n in group.winograd], group.lowered, group.harm))
    return out


@dataclass
class Point:
    """One evaluated placement: a point of the Pareto curve."""

    label: str
    placement: Placement
    fp16_share: float
    verdict: Verdict
    part: str = "calibration"

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "fp16_share": self.fp16_share, "part": self.part,
                "layers_not_fp16": len(self.placement), "choices": self.placement.counts(),
                "placement": self.placement.as_dict(),
                **self.verdict.to_dict()}


@dataclass
class SearchResult:
    chosen: Placement
    chosen_verdict: Verdict
    fp16_share: float
    floor: Point
    start: Point
    groups: list[Group]
    walk: list[str]  # group names, lowering order
    walk_index: int  # how many groups of the walk are lowered in the choice (before refinement)
    points: list[Point]
    reached: bool
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def curve(self) -> list[Point]:
        """The calibration points, by fp16 share."""
        return sorted((p for p in self.points if p.part == "calibration"), key=lambda p: p.fp16_share)

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen.as_dict(), "chosen_verdict": self.chosen_verdict.to_dict(),
                "fp16_share": self.fp16_share, "reached": self.reached, "walk": self.walk,
                "walk_index": self.walk_index, "groups": [g.to_dict() for g in self.groups],
                "points": [p.to_dict() for p in self.points], "notes": self.notes, "seconds": self.seconds}


class Budget:
    """Wall-clock seconds the optional phases may still use."""

    def __init__(self, seconds: float | None) -> None:
        self.deadline = None if seconds is None else time.perf_counter() + seconds
        self.reserve: Callable[[], float] = lambda: 0.0

    def left(self) -> float:
        if self.deadline is None:
            return float("inf")
        return self.deadline - max(0.0, self.reserve()) - time.perf_counter()

    def less(self, seconds: float | Callable[[], float]) -> Budget:
        """This budget ending ``seconds`` earlier (time kept for what must run after; a callable is asked again
        at each :meth:`left`, so an estimate can follow what is measured meanwhile)."""
        out = Budget(None)
        out.deadline = self.deadline
        more = seconds if callable(seconds) else (lambda: float(seconds))
        out.reserve = lambda: self.reserve() + more()
        return out


class Search:
    """The search's state over one evaluator (see :func:`search`); :meth:`find` can run again on a larger
    part (the calibration samples plus held-out ones that showed the choice too optimistic)."""

    def __init__(self, evaluator: PlacementEvaluator, graph: Graph, candidates: Sequence[str],
                 macs: Mapping[str, int], *, base: Placement | None = None, groups: int = DEFAULT_GROUPS,
                 sensitivity_samples: int = SENSITIVITY_SAMPLES, workers: int = 2, budget: Budget | None = None,
                 share_of: Callable[[Placement], float] | None = None, progress: Progress | None = None,
                 arith_choices: Sequence[str] = (), no_winograd: bool = False) -> None:
        self.t0 = time.perf_counter()
        self.no_winograd = no_winograd
        self.arith_choices = set(arith_choices)
        self.ev = evaluator
        self.graph = graph
        self.base = base or Placement()
        self.macs = macs
        self.workers = workers
        self.budget = budget or Budget(None)
        self.share = share_of or (lambda p: fp16_share(macs, p))
        self.say = progress or (lambda _m: None)
        self.sensitivity_samples = sensitivity_samples
        self.points: list[Point] = []
        self.notes: list[str] = []
        free = [n for n in candidates if self.base.choice(n) == FP16]
        self.floor_p = self.base.merged(Placement.uniform(free, FP32))
        self.groups = make_groups(graph, free, macs, groups)
        self.walk: list[Group] = []
        self.j = 0
        #: the groups the refinement lowered on top of walk point :attr:`j`, in the order it kept them
        self.refined: list[Group] = []
        wino = winograd_in_fp16(graph, free, self.base)
        #: the model as given, its winograd convolutions lowered as ``31=64`` when ``no_winograd``
        self.start_p = self.base.merged(dict.fromkeys(wino, NOWINO)) if no_winograd and wino else self.base

    def run(self, labelled: Sequence[tuple[str, Placement]], part: str = "calibration",
            count: int | None = None) -> list[Point]:
        verdicts = self.ev.evaluate([p for _, p in labelled], part, count)
        out = [Point(lb, p, self.share(p), v, part) for (lb, p), v in zip(labelled, verdicts, strict=True)]
        if count is None:
            self.points.extend(out)
        return out

    def at(self, j: int, extra: Sequence[Group] = ()) -> Placement:
        """The walk's point ``j`` (its first ``j`` groups lowered), plus ``extra`` groups lowered."""
        low: dict[str, str] = {}
        for g in [*self.walk[:j], *extra]:
            low.update(g.low())
        return self.floor_p.merged(low)

    def result(self, chosen: Placement, verdict: Verdict, reached: bool, start: Point, floor: Point,
               notes: Sequence[str] = ()) -> SearchResult:
        return SearchResult(chosen, verdict, self.share(chosen), floor, start, self.groups, [g.name for g in self.walk],
                            self.j, self.points, reached, [*self.notes, *notes], time.perf_counter() - self.t0)

    def order(self) -> None:
        """Phases 1 and 2: each group alone lowered in the floor on a few samples; the walk's order."""
        weighed = [g for g in self.groups if g.macs > 0]
        trials: list[tuple[str, Placement]] = [("floor", self.floor_p)]
        for g in weighed:
            if not (self.no_winograd and g.winograd):
                trials.append((f"{g.name} fp16", self.floor_p.merged(dict.fromkeys(g.layers, FP16))))
            if g.winograd:
                trials.append((f"{g.name} nowino", self.floor_p.merged({**dict.fromkeys(g.layers, FP16),
                                                                         **dict.fromkeys(g.winograd, NOWINO)})))
        self.say(f"  sensitivity: {len(weighed)} groups lowered one at a time on {self.sensitivity_samples} samples")
        got = self.run(trials, count=self.sensitivity_samples)
        results = {lb: p.verdict.smooth for (lb, _), p in zip(trials, got, strict=True)}
        for g in weighed:
            fp = results.get(f"{g.name} fp16", float("inf"))
            nw = results.get(f"{g.name} nowino", float("inf"))
            g.lowered = NOWINO if nw < fp else FP16
            g.harm = max(min(fp, nw) - results["floor"], 0.0)
        self.walk = sorted(weighed, key=lambda g: (g.harm / g.macs, -g.macs))
        self.say("  walk: " + ", ".join(f"{g.name} ({g.harm:.2g})" for g in self.walk))

    def lower_in_runs(self, lo: int, extra: list[Group], groups: Sequence[Group], part: str, chosen: Placement,
                      verdict: Verdict) -> tuple[list[Group], Placement, Verdict]:
        """``groups`` tried lowered on top of walk point ``lo`` and ``extra`` (which grows by those kept), in order,
        in runs (group testing: most of them pass, PP-OCRv4's 18 of 23): a run that passes is kept whole and the
        next is twice as long, a run that misses is halved, a single group that misses stays fp32. One placement
        per round (its samples are split over the workers): about one evaluation per kept run and log2(run) per
        group that stays fp32 (in pairs plus their union: three per two groups). Returns the groups that stayed
        fp32 (or were not tried: the budget ended), the choice and its verdict."""
        rest, kept = list(groups), []
        size, grow = 2, True
        while rest and self.budget.left() > 0:
            run = rest[:size]
            what = run[0].name if len(run) == 1 else f"{run[0].name} .. {run[-1].name} ({len(run)} groups)"
            (p,) = self.run([(f"walk {lo} + {what}", self.at(lo, [*extra, *run]))], part)
            self.say(f"  + {what}: {'kept' if p.verdict.ok else 'missed'} ({100 * p.fp16_share:.1f}% fp16)")
            if p.verdict.ok:
                extra += run
                rest = rest[len(run):]
                chosen, verdict = p.placement, p.verdict
                size = size * 2 if grow else size
                grow = True
            elif len(run) == 1:
                kept.append(rest.pop(0))  # this group stays fp32
            else:
                size, grow = len(run) // 2, False
        return kept + rest, chosen, verdict

    def find(self, part: str = "calibration") -> tuple[Placement, Verdict]:
        """Phases 4 and 5 on ``part``: the last passing point of the walk, refined, then the MAC-free groups
        tried in fp16. Needs :meth:`order` first; the floor must pass on ``part``."""
        walk = self.walk
        known: dict[int, Point] = {}
        lo, hi = 0, len(walk)  # at(lo) passes; at(hi) unknown
        (last,) = self.run([(f"walk {hi}/{len(walk)}", self.at(hi))], part)
        known[hi] = last
        if last.verdict.ok:
            lo = hi
        while hi - lo > 1:
            n = min(self.workers, hi - lo - 1)
            js = sorted({lo + (hi - lo) * (k + 1) // (n + 1) for k in range(n)} - {lo, hi})
            got = self.run([(f"walk {j}/{len(walk)}", self.at(j)) for j in js], part)
            for j, p in zip(js, got, strict=True):
                known[j] = p
            passing = [j for j in js if known[j].verdict.ok]
            failing = [j for j in js if not known[j].verdict.ok]
            if passing:
                lo = max(passing)
            below = [j for j in failing if j > lo]
            hi = min(below) if below else hi
        if lo not in known:
            (known[lo],) = self.run([(f"walk {lo}/{len(walk)}", self.at(lo))], part)
        self.j = lo
        chosen, verdict = self.at(lo), known[lo].verdict
        self.say(f"  walk on {part}: {lo} of {len(walk)} groups lowered, {100 * self.share(chosen):.1f}% fp16: "
                 f"{verdict.headline()}")
        # refinement: the groups the walk left fp32 tried on top of the choice (:meth:`lower_in_runs`); then the
        # halves of those that stayed fp32, and so on down to single layers, while the budget lasts
        # (the walk's group lo missed on top of point lo: its halves are tried with the others')
        extra: list[Group] = []
        rest, missed = walk[lo + 1:], walk[lo:lo + 1]
        while (rest or missed) and self.budget.left() > 0:
            kept, chosen, verdict = self.lower_in_runs(lo, extra, rest, part, chosen, verdict)
            rest, missed = [h for g in missed + kept for h in halves(g, self.macs)], []
        self.refined = extra
        if extra:
            self.say(f"  refined: {len(extra)} more group(s) lowered, {100 * self.share(chosen):.1f}% fp16")
        # MAC-free groups cost no fp16 share when fp32, but each fp32 layer is a cast (and a trip off the GPU)
        free = [g for g in self.groups if g.macs == 0]
        if free and self.budget.left() > 0:
            low: dict[str, str] = {}
            for g in free:
                low.update(g.low())
            (tidy,) = self.run([("+ MAC-free groups fp16", chosen.merged(low))], part)
            if tidy.verdict.ok:
                chosen, verdict = tidy.placement, tidy.verdict
        # on the GPU, fp32 layers run on the CPU: fp32 arithmetic on fp16 storage (31=1) keeps them on the GPU
        if self.arith_choices and self.budget.left() > 0:
            swap = {n: ARITH for n in chosen.names(FP32) if n in self.arith_choices and self.macs.get(n, 0) > 0
                    and self.base.choice(n) != FP32}
            if swap:
                (gpu,) = self.run([(f"{len(swap)} fp32 layers as 31=1", chosen.merged(swap))], part)
                if gpu.verdict.ok:
                    chosen, verdict = gpu.placement, gpu.verdict
        if self.budget.left() <= 0:
            self.notes.append("the time budget ended the refinement")
        return chosen, verdict


def search(evaluator: PlacementEvaluator, graph: Graph, candidates: Sequence[str], macs: Mapping[str, int], *,
           base: Placement | None = None, groups: int = DEFAULT_GROUPS, sensitivity_samples: int = SENSITIVITY_SAMPLES,
           workers: int = 2, budget: Budget | None = None, share_of: Callable[[Placement], float] | None = None,
           progress: Progress | None = None, state: list | None = None,
           arith_choices: Sequence[str] = (), no_winograd: bool = False) -> SearchResult:
    """The placement with the most fp16 MACs that passes on the calibration part (module docstring).

    ``base``: choices the model already carries or that must stay (NaN fixes); ``share_of``: the fp16 share of
    a placement (default :func:`.placement.fp16_share` over ``macs``); ``state``: a list that receives the
    :class:`Search` (to search again on more data); ``arith_choices``: layers that may take ``31=1`` instead of
    fp32 at the end (Vulkan: it keeps them on the GPU; same fp16 share); ``no_winograd``: every winograd
    convolution that is lowered is lowered as ``31=64`` (the target showed that its fp16 winograd is the loss
    and the proxy cannot see it), the start point included."""
    s = Search(evaluator, graph, candidates, macs, base=base, groups=groups, sensitivity_samples=sensitivity_samples,
               workers=workers, budget=budget, share_of=share_of, progress=progress, arith_choices=arith_choices,
               no_winograd=no_winograd)
    if state is not None:
        state.append(s)
    given = "as given" + (", winograd off" if s.start_p != s.base else "")
    start, floor = s.run([(given, s.start_p), ("every layer fp32", s.floor_p)])
    s.say(f"  {given}: {start.verdict.headline()}")
    s.say(f"  every layer fp32: {floor.verdict.headline()}")
    if start.verdict.ok:
        return s.result(s.start_p, start.verdict, True, start, floor, [f"the model {given} passes on calibration"])
    if not floor.verdict.ok:
        return s.result(s.floor_p, floor.verdict, False, start, floor,
                        ["even every layer in fp32 misses the criteria: " + "; ".join(floor.verdict.reasons)])
    s.order()
    chosen, verdict = s.find()
    return s.result(chosen, verdict, True, start, floor)


def with_fp32_layers(graph: Graph, names: Sequence[str] | set[str]) -> Graph:
    """A copy of ``graph`` with ``names`` kept fp32 (``31=23``), made safe on every path."""
    return apply_placement(graph, Placement.uniform(names, FP32))
