"""The checks a choice of the phone repair passes after the search (:mod:`.target_repair`), and what happens
when it misses one: the held-out confirmation on the search target (:func:`confirm_held_out`), the gate
(:func:`pass_gate`), the verification on the target itself after a proxy search (:func:`verify_on_target`), each
mending a miss on a few samples (:mod:`.mend`) or stepping back along the walk (:func:`step_back`); and, before
the search, whether the target's fp16 winograd is a loss the proxy cannot see (:func:`winograd_is_the_loss`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TypeVar

from ncnnpass.ir import Graph
from ncnnpass.ir.runtime import describe_target

from .criteria import Verdict
from .evaluator import Evaluator, Part
from .mend import Mended, mend
from .placement import FP16_ARITHMETIC, FP32, NOWINO, Placement, winograd_in_fp16
from .search import Budget, Point, Search

Progress = Callable[[str], None]
T = TypeVar("T")
#: a target verification that misses steps back along the curve by at least this much fp16 share per try, and
#: tries this many times whatever the budget says
FALLBACK_STEP = 0.05
#: winograd off for the whole search when it at least halves the target's score of the model as given
WINOGRAD_GAIN = 0.5
#: the winograd check (two placements on the target's verification samples, ~2 min on the emulated A76) runs only
#: when the winograd convolutions hold at least this share of the MACs: below it, at most that share of fp16 is at
#: stake (kept fp32 instead of ``31=64`` if the verification on the target misses there) - PP-OCRv3 rec: 2
#: convolutions, 5.4%, 142 s for no gain; the detectors: 5 convolutions, 54-65%
WINOGRAD_MIN_SHARE = 0.10
MIN_TARGET_FALLBACKS = 3
#: the held-out lines a gate's mend is judged on after the gate's own: the mend is chosen on the gate's lines off,
#: and the gate's other lines allow as many off as before. PP-OCRv3 on lavapipe: the 98.7% choice changed 4 of
#: 200 gate lines, the mend that brought 3 back left 1 off of the other 197 (2 allowed), and it changed 4 of 200
#: fresh lines (as given: 5)
FRESH_GATE = "gate-2"


def unchosen(ev: Evaluator, parts: Sequence[str]) -> list[str]:
    """``parts`` as the checks after the search judge them: a calibration part (``calibration*``) by its view as
    held-out lines (:meth:`.evaluator.Evaluator.view`, ``held:<name>``: confidence as a share, 32 lines allow 1
    beyond the tolerance; strings and drop_score per line, :class:`.criteria.Criteria`). Only the search chooses
    on the calibration lines; a mend or a step back is chosen elsewhere. Judged per line, each of the three mends
    that brought PP-OCRv3's one held-out string back moved one calibration line's confidence to 1.1-1.2e-2, and
    the second search ended at its walk (63.2% fp16, on the phone CPU and the GPU alike). An evaluator without
    views judges the parts as they are."""
    view = getattr(ev, "view", None)
    return [view(q, f"held:{q}") if view is not None and q.startswith("calibration") else q for q in parts]


def mended_calibration(ev: Evaluator, p: Placement) -> Verdict:
    """A mended choice's calibration verdict: its calibration lines judged as held-out ones (:func:`unchosen`)."""
    (v,) = ev.evaluate([p], unchosen(ev, ["calibration"])[0])
    return v


def fallbacks(points: Sequence[Point], below: float) -> list[Point]:
    """Placements that passed every part they were judged on, with less fp16 than ``below``, most fp16 first."""
    failed = {p.placement for p in points if not p.verdict.ok}
    seen: dict[Placement, Point] = {}
    for p in points:
        if p.verdict.ok and p.placement not in failed and p.fp16_share < below and p.placement not in seen:
            seen[p.placement] = p
    return sorted(seen.values(), key=lambda p: -p.fp16_share)


def next_fallback(pending: list[Point], share: float) -> Point:
    """The passing point at least :data:`FALLBACK_STEP` less fp16 than ``share`` (else the next); removes
    it and every point above it from ``pending``."""
    pick = next((i for i, p in enumerate(pending) if p.fp16_share <= share - FALLBACK_STEP), 0)
    p = pending[pick]
    del pending[:pick + 1]
    return p


def confirm_held_out(ev: Evaluator, s: Search, chosen: Placement, cal: Verdict, confirm2: Part, clock: Budget,
                     notes: list[str], say: Progress) -> tuple[Placement, Verdict, Verdict, list[str]]:
    """The choice on the first held-out samples on the search target; when it misses there on a few samples, a
    mend on them (:mod:`.mend`: a group or two kept fp32; it must still pass the calibration) judged on the
    next held-out samples; else (or when that misses) the search again on calibration + the first samples
    (walk and refinement) and the new choice on the next held-out samples, stepping down the passing points
    while that misses. Returns (choice, its calibration verdict, held-out verdict, the parts the choice passed,
    the held-out verdict's last: what a step back must pass too — a mended choice passed the calibration and both
    held-out parts, each at its own tolerance; a second search's, calibration + the first held-out samples at
    the calibration's).

    The mend first: PP-OCRv4's 89.2% choice missed its 24 held-out lines by one line's confidence change
    (5.8e-3 for 5e-3, every string right), and the second search, with the budget spent on the first, stopped
    at its walk's 44.0%."""
    where = describe_target(ev.target)
    (held,) = ev.evaluate([chosen], "confirm")
    say(f"  held-out ({held.samples}) on {where}: {held.headline()}")
    if held.ok or not len(confirm2):
        return chosen, cal, held, unchosen(ev, ["calibration", "confirm"])
    fixed = mend(s, chosen, held, ev, "confirm", say, lambda p: judge_parts(ev, p, unchosen(ev, ["calibration"])))
    if fixed is not None:
        s.run([(f"mended: {' + '.join(fixed.raised)} fp32", fixed.placement)])  # the curve's point (per line)
        (held2,) = ev.evaluate([fixed.placement], "confirm-2")
        say(f"  mended, held-out ({held2.samples} more) on {where}: {held2.headline()}")
        if held2.ok:
            notes.append(f"held-out missed at {100 * s.share(chosen):.1f}% fp16 ({'; '.join(held.reasons)}); "
                         f"{fixed.describe(s.share(fixed.placement))}; the next {held2.samples} held-out pass")
            return (fixed.placement, mended_calibration(ev, fixed.placement), held2,
                    unchosen(ev, ["calibration", "confirm", "confirm-2"]))
    say("  missed on held-out: searching again with those samples added to the calibration")
    notes.append(f"held-out missed at {100 * s.share(chosen):.1f}% fp16 ({'; '.join(held.reasons)}); searched "
                 f"again on calibration + those {held.samples} samples")
    (floor2,) = ev.evaluate([s.floor_p], "calibration+confirm")
    if floor2.ok:
        if not s.walk:
            s.order()
        chosen, cal = s.find("calibration+confirm")
    else:
        chosen, cal = s.floor_p, floor2
    (held,) = ev.evaluate([chosen], "confirm-2")
    say(f"  held-out ({held.samples} more) on {where}: {held.headline()}")
    pending = fallbacks(s.points, s.share(chosen))
    while not held.ok and pending and clock.left() > 0:
        p = next_fallback(pending, s.share(chosen))
        chosen, cal = p.placement, p.verdict
        (held,) = ev.evaluate([chosen], "confirm-2")
        say(f"  fallback {p.label} ({100 * p.fp16_share:.1f}%): {held.headline()}")
    return chosen, cal, held, unchosen(ev, ["calibration+confirm", "confirm-2"])


def bisect_passing(lo: int, hi: int, probe: Callable[[int], tuple[bool, T]], more: Callable[[], bool]
                   ) -> tuple[int, T | None]:
    """Bisection between ``lo`` (passes, or is taken to) and ``hi`` (misses) while ``more()``: the highest index
    whose ``probe`` passed and what that probe gave (None when none passed: ``lo`` as it came)."""
    best = None
    while hi - lo > 1 and more():
        k = (lo + hi) // 2
        ok, got = probe(k)
        if ok:
            lo, best = k, got
        else:
            hi = k
    return lo, best


def step_back(s: Search, chosen: Placement, cal: Verdict, judge: Callable[[Placement, str], Verdict],
              clock: Budget, notes: list[str], say: Progress, miss: str,
              mended: Callable[[], Mended | None] | None = None) -> tuple[Placement, Verdict, Verdict]:
    """``chosen`` missed (``miss`` says how) where ``judge`` looks: first ``mended()`` (:mod:`.mend`: a group or
    two kept fp32 that bring the failing samples back); else, for a choice the refinement built on walk point
    ``s.j``, back along the refinement: the choice with the groups it kept last raised back to fp32 (the
    last 1, 2, 4, ... until one passes, then bisection above it; PP-OCRv4's 74.8% choice missed lavapipe's
    gate by a line and its walk point was 52.6%; before, PP-OCRv5's 66.6% refinement
    missed there, its 36.4% walk point passed, and the bisection below it landed on 21.9%); else the most fp16
    point of the walk below it that passes ``judge``, by bisection between the floor (assumed to pass) and the
    choice (the walk is ordered first when the model as given passed the search); else the floor.
    ``judge(placement, label)`` says its verdict. Returns (choice, its calibration verdict, its ``judge``
    verdict)."""
    fixed = mended() if mended is not None else None
    if fixed is not None:
        notes.append(f"{miss}; {fixed.describe(s.share(fixed.placement))}")
        s.run([(f"mended: {' + '.join(fixed.raised)} fp32", fixed.placement)])  # the curve's point (per line)
        return fixed.placement, mended_calibration(s.ev, fixed.placement), fixed.fresh or fixed.verdict
    tries = 0

    def more() -> bool:  # a minimum of tries whatever the budget says
        return tries < MIN_TARGET_FALLBACKS or clock.left() > 0

    # the refinement's groups still lowered in the choice, in the order it kept them: point k raises all after
    # the k-th back to fp32 (the choice's other fp32 layers, mends included, stay)
    refined = [g for g in s.refined if any(chosen.choice(n) in FP16_ARITHMETIC for n in g.layers)]

    def along(k: int) -> tuple[bool, tuple[Placement, Verdict]]:
        nonlocal tries
        tries += 1
        p = chosen.merged(dict.fromkeys([n for g in refined[k:] for n in g.layers], FP32))
        v = judge(p, f"  refinement {k}/{len(refined)} ({100 * s.share(p):.1f}%)")
        return v.ok, (p, v)

    if refined:
        # from the choice down: the last 1, 2, 4, ... kept groups raised until a point passes (the refinement's
        # points are not monotone: PP-OCRv4's walk point below an 85.0% choice missed the held-out lines that
        # choice passed), then bisection between that point and the last that missed
        n, hi, found, step = len(refined), len(refined), None, 1
        while hi > 0 and more():
            k = max(n - step, 0)
            ok, got = along(k)
            if ok:
                found = (k, got)
                break
            hi, step = k, step * 2
        if found is not None:
            lo, kept = bisect_passing(found[0], hi, along, more)
            s.refined = refined[:lo]  # a later step back starts below this point
            chosen, verdict = kept or found[1]
            notes.append(f"{miss}; stepped back along the refinement to {lo} of its {n} group(s) "
                         f"({100 * s.share(chosen):.1f}%)")
            (point,) = s.run([(f"refinement {lo}/{n}", chosen)])
            return chosen, point.verdict, verdict
        s.refined = []
        tries = 0  # the walk below gets its own minimum of tries

    def at(j: int) -> tuple[bool, tuple[int, Verdict]]:
        nonlocal tries
        tries += 1
        v = judge(s.at(j), f"  walk {j}/{len(s.walk)} ({100 * s.share(s.at(j)):.1f}%)")
        return v.ok, (j, v)

    best: tuple[int, Verdict] | None = None
    if not s.walk:  # the model as given passed the search: order the walk, try its last point first
        s.order()
        s.j = len(s.walk)
        ok, got = at(s.j)
        best = got if ok else None
    elif not refined and chosen != s.at(s.j) and s.share(s.at(s.j)) < s.share(chosen):
        # the choice refined walk point j (groups lowered on top of it): that point was not judged here; first
        ok, got = at(s.j)
        best = got if ok else None
    _, below = bisect_passing(s.j if best else 0, s.j, at, more)
    best = below or best
    if best is not None:
        s.j = best[0]  # a later step back starts below this point
        chosen, verdict = s.at(best[0]), best[1]
        notes.append(f"{miss}; stepped back to walk {best[0]}/{len(s.walk)} ({100 * s.share(chosen):.1f}%)")
    else:
        s.j, chosen = 0, s.floor_p
        verdict = judge(chosen, "  every layer fp32")
        notes.append(f"{miss}; no walk point below it passed there: every layer fp32")
    return chosen, next((q.verdict for q in s.points if q.placement == chosen), cal), verdict


def first_miss(ev: Evaluator, p: Placement, parts: Sequence[str],
               report: Callable[[str, Verdict], None] | None = None) -> tuple[str, Verdict]:
    """``p`` on each of ``parts`` of ``ev`` in turn (at least one): the first part it misses and that verdict,
    else the last part and its verdict. ``report`` is told each part's verdict as it comes."""
    if not parts:
        raise ValueError("no part to judge on")
    for part in parts:
        (v,) = ev.evaluate([p], part)
        if report is not None:
            report(part, v)
        if not v.ok:
            break
    return part, v


def judge_parts(ev: Evaluator, p: Placement, parts: Sequence[str]) -> Verdict:
    """``p``'s verdict on each of ``parts`` in turn: the first that fails, else the last."""
    return first_miss(ev, p, parts)[1]


def pass_gate(ev: Evaluator, s: Search, chosen: Placement, cal: Verdict, clock: Budget, notes: list[str],
              say: Progress, before: Sequence[str] = ("calibration", "confirm"), mendable: bool = True
              ) -> tuple[Placement, Verdict, Verdict]:
    """The choice on the gate (hundreds of held-out lines on the search target, judged per line as a share:
    :class:`.criteria.Criteria`); when it misses, the most fp16 walk point below it that passes the parts the
    choice passed (``before``: its calibration and held-out samples; a walk point need not) and the gate. A rate
    of changed lines a few dozen samples cannot see (one in a hundred) shows here. ``mendable``: a miss is first
    mended (:mod:`.mend`), and the mended choice must then pass :data:`FRESH_GATE` too (when ``ev`` has it:
    as many held-out lines as the gate, judged as it is). On a proxy for a noisier target the
    target verifies after (the emulated A76 changes 2-4 times as many lines as lavapipe: PP-OCRv5's choice
    mended to pass lavapipe's gate changed 4 of 200 held-out lines there, yet none of the 8 gate lines lavapipe
    came closest to changing, which the A76 verified alone then: 8 lines cannot see 2%; it now also verifies
    the reference's 8 most fragile); stepping back instead gives up the refinement's whole gain (PP-OCRv4:
    85.0% to the walk's 52.6% or less). Returns (choice, its calibration verdict, its gate verdict)."""
    where = describe_target(ev.target)
    before = unchosen(ev, before)
    (gated,) = ev.evaluate([chosen], "gate")
    say(f"  gate ({gated.samples} held-out) on {where}: {gated.headline()}")
    if gated.ok or chosen == s.floor_p:
        return chosen, cal, gated

    def judge(p: Placement, label: str) -> Verdict:
        v = judge_parts(ev, p, [*before, "gate"])
        say(f"{label} on {where} ({v.samples}): {v.headline()}")
        return v

    def mended() -> Mended | None:
        fixed = mend(s, chosen, gated, ev, "gate", say, lambda p: judge_parts(ev, p, before))
        if fixed is None or not len(ev.parts.get(FRESH_GATE, ())):
            return fixed
        (fresh,) = ev.evaluate([fixed.placement], FRESH_GATE)
        say(f"  mended, on {fresh.samples} fresh gate lines on {where}: {fresh.headline()}")
        if not fresh.ok:
            say("  the mend fitted the lines it was chosen on: stepping back")
            return None
        return replace(fixed, fresh=fresh)

    miss = f"the gate on {where} missed at {100 * s.share(chosen):.1f}% fp16 ({'; '.join(gated.reasons)})"
    return step_back(s, chosen, cal, judge, clock, notes, say, miss, mended if mendable else None)


def verify_on_target(tev: Evaluator, s: Search, chosen: Placement, cal: Verdict, clock: Budget,
                     notes: list[str], say: Progress, search_check: Callable[[Placement], Verdict] | None = None,
                     parts: Sequence[str] = ("verify",)) -> tuple[Placement, Verdict, Verdict]:
    """The choice on the held-out verification samples on the target (each of ``parts`` of ``tev`` in turn: the
    reference's most fragile lines, then the gate lines the choice came closest to changing on the proxy); when
    it misses, :func:`step_back` with the target as the judge, a mend first on the part it missed (which must
    then pass the other parts too).

    ``search_check`` judges a walk point on the search target's held-out samples before the target runs it
    (cheap): a point the file must also pass there (the proxy is the phone's GPU: one file, every path)."""
    where = describe_target(tev.target)
    missed, on_target = first_miss(tev, chosen, parts, lambda part, v: say(
        f"  held-out ({v.samples}, {part}) on {where}: {v.headline()}"))
    if on_target.ok or chosen == s.floor_p:
        return chosen, cal, on_target
    searched = getattr(s.ev, "target", None)
    searched = describe_target(searched) if searched else "the search target"

    def judge(p: Placement, label: str) -> Verdict:
        if search_check is not None:
            pre = search_check(p)
            if not pre.ok:
                say(f"{label} on {searched}: {pre.headline()}")
                return pre
        v = judge_parts(tev, p, parts)
        say(f"{label} on {where}: {v.headline()}")
        return v

    others = [q for q in parts if q != missed]

    def passes_the_rest(p: Placement) -> Verdict:  # asked only when there is a search check or another part
        pre = search_check(p) if search_check is not None else None
        if pre is not None and (not pre.ok or not others):
            return pre
        return judge_parts(tev, p, others)

    miss = f"{where} missed at {100 * s.share(chosen):.1f}% fp16 ({'; '.join(on_target.reasons)})"
    return step_back(s, chosen, cal, judge, clock, notes, say, miss,
                     lambda: mend(s, chosen, on_target, tev, missed, say,
                                  passes_the_rest if search_check is not None or others else None))


def winograd_is_the_loss(tev: Evaluator, graph: Graph, base: Placement, candidates: Sequence[str],
                         notes: list[str], say: Progress, macs: Mapping[str, int] | None = None,
                         min_share: float = WINOGRAD_MIN_SHARE) -> bool:
    """Whether the target's fp16 winograd is the loss a proxy cannot see: on the target's verification samples
    the model as given misses and the same with its winograd convolutions as ``31=64`` (fp16, winograd off)
    scores at most :data:`WINOGRAD_GAIN` times as badly (a clear gain, not noise on a few samples; winograd
    off costs the phone speed). ncnn's ARM fp16 winograd F(6,3) has no counterpart on lavapipe (docs/phone.md).
    With ``macs`` (per layer), not checked when the winograd convolutions hold less than ``min_share`` of them
    (:data:`WINOGRAD_MIN_SHARE`)."""
    if not tev.target.startswith("arm") or tev.target == "arm-a57":  # the A57 has no fp16 arithmetic
        return False
    wino = winograd_in_fp16(graph, candidates, base)
    if not wino:
        return False
    total = sum(macs.values()) if macs else 0
    if total:
        share = sum(macs.get(n, 0) for n in wino) / total
        if share < min_share:
            say(f"  winograd check skipped: the {len(wino)} winograd convolution(s) hold {share:.1%} of the MACs "
                f"(< {min_share:.0%}); if they are the loss on {describe_target(tev.target)}, its verification keeps "
                f"them fp32")
            return False
    off = base.merged(dict.fromkeys(wino, NOWINO))
    given, nowino = tev.evaluate([base, off], "verify")
    where = describe_target(tev.target)
    say(f"  on {where}: as given {given.headline()}; {len(wino)} winograd convolution(s) as 31=64: {nowino.headline()}")
    if given.ok or not nowino.score <= WINOGRAD_GAIN * given.score:
        return False
    notes.append(f"{where}: its fp16 winograd is a loss the proxy cannot see (as given: {given.headline()}; "
                 f"{len(wino)} winograd convolution(s) as 31=64: {nowino.headline()}); the search lowers them as 31=64")
    return True


__all__ = ["FALLBACK_STEP", "FRESH_GATE", "MIN_TARGET_FALLBACKS", "WINOGRAD_GAIN", "WINOGRAD_MIN_SHARE",
           "confirm_held_out", "fallbacks", "first_miss", "judge_parts", "mended_calibration", "next_fallback",
           "pass_gate", "step_back", "unchosen", "verify_on_target", "winograd_is_the_loss"]
