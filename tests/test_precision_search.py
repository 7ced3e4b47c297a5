"""The mixed-precision search's logic with a fake evaluator (fast), the placement forms, the verdicts and the
Pareto output. The real searches on the emulated phone and on lavapipe are in tests/test_target_repair.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ncnnpass.ir.featmask import unsafe_edges
from ncnnpass.passes.engine.testing import fill_weights, model
from ncnnpass.passes.precision.criteria import Criteria, Verdict
from ncnnpass.passes.precision.pareto import front, write_curve
from ncnnpass.passes.precision.placement import (
    ARITH,
    FP16,
    FP32,
    NOWINO,
    Placement,
    apply_placement,
    choices_for,
    existing_placement,
    fp16_share,
)
from ncnnpass.passes.precision.search import Budget, make_groups, search

# a chain of 8 convolutions; c3 and c6 are 3x3 stride 1 (winograd-eligible), the others 1x1; a Softmax head
CHAIN = """
Input in0 0 1 x 0=8 1=8 2=16
Convolution c1 1 1 x a1 0=16 1=1 5=1 6=256
Convolution c2 1 1 a1 a2 0=16 1=1 5=1 6=256
Convolution c3 1 1 a2 a3 0=16 1=3 4=1 5=1 6=2304
Convolution c4 1 1 a3 a4 0=16 1=1 5=1 6=256
Convolution c5 1 1 a4 a5 0=16 1=1 5=1 6=256
Convolution c6 1 1 a5 a6 0=16 1=3 4=1 5=1 6=2304
Convolution c7 1 1 a6 a7 0=16 1=1 5=1 6=256
Convolution c8 1 1 a7 a8 0=16 1=1 5=1 6=256
Softmax sm 1 1 a8 out 0=0
"""
CONVS = [f"c{i}" for i in range(1, 9)]


@pytest.fixture
def chain():
    g = fill_weights(model(CHAIN), seed=0)
    macs = {ly.name: int(ly.get(6, 0)) * 64 for ly in g.layers if ly.type == "Convolution"}
    macs.update({"in0": 0, "sm": 0})
    return g, macs


class FakeEvaluator:
    """Score = the sum of the harms of the layers left in fp16 (a winograd conv harms less with ``nowino``);
    ok when the score is at most 1. Counts evaluations."""

    def __init__(self, harm: dict[str, float], nowino_harm: dict[str, float] | None = None,
                 held_out_extra: float = 0.0) -> None:
        self.harm = harm
        self.nowino_harm = nowino_harm or {}
        self.held_out_extra = held_out_extra
        self.calls = 0
        self.placements = 0

    def score(self, p: Placement) -> float:
        s = 0.0
        for name, h in self.harm.items():
            c = p.choice(name)
            if c == FP16:
                s += h
            elif c == NOWINO:
                s += self.nowino_harm.get(name, h)
        return s

    def evaluate(self, placements, part="calibration", count=None):
        self.calls += 1
        self.placements += len(placements)
        out = []
        for p in placements:
            s = self.score(p) + (self.held_out_extra if part == "held-out" else 0.0)
            out.append(Verdict(s <= 1.0, s, {"score": s}, [] if s <= 1.0 else ["too far"], count or 10))
        return out


def _search(chain, ev, **kw):
    g, macs = chain
    cands = [ly.name for ly in g.layers if ly.type != "Input"]
    return search(ev, g, cands, macs, groups=8, workers=2, **kw)


def test_groups_are_regions_with_the_head_apart(chain) -> None:
    g, macs = chain
    cands = [ly.name for ly in g.layers if ly.type != "Input"]
    groups = make_groups(g, cands, macs, 4)
    assert [x for grp in groups for x in grp.layers] == cands  # contiguous, in order, all of them
    assert groups[-1].layers == ["sm"] and groups[-1].macs == 0  # the MAC-free head is its own group
    assert groups[0].layers == ["c1"]  # the first layer alone
    assert all(grp.macs > 0 for grp in groups[:-1])
    assert any(grp.winograd == ["c3"] for grp in groups)


def test_search_keeps_only_the_harmful_region_fp32(chain) -> None:
    """The harm sits in c4 and the Softmax, not in a tail: the choice keeps exactly those fp32, and every
    other convolution in fp16 (a tail search would have to keep c4..c8)."""
    ev = FakeEvaluator({"c4": 2.0, "sm": 5.0, "c7": 0.05, "c2": 0.05})
    res = _search(chain, ev)
    assert res.reached and res.chosen_verdict.ok
    assert res.chosen.names(FP32) == ["c4", "sm"]
    _, macs = chain
    assert res.fp16_share == pytest.approx(1 - macs["c4"] / sum(macs.values()))
    # the curve holds the floor, the start and the walk's probes; the chosen point passes
    assert any(p.label == "every layer fp32" and p.verdict.ok for p in res.points)
    assert any(p.label == "as given" and not p.verdict.ok for p in res.points)


def test_winograd_off_is_chosen_where_it_removes_the_harm(chain) -> None:
    """c6 harms only through winograd: the search keeps it fp16 with 31=64 (still counted as fp16)."""
    ev = FakeEvaluator({"c6": 3.0, "c1": 0.1}, nowino_harm={"c6": 0.01})
    res = _search(chain, ev)
    assert res.reached
    assert res.chosen.choice("c6") == NOWINO
    assert res.chosen.names(FP32) == []
    assert res.fp16_share == pytest.approx(1.0)


def test_as_given_passing_changes_nothing(chain) -> None:
    ev = FakeEvaluator({"c1": 0.2})
    res = _search(chain, ev)
    assert res.reached and len(res.chosen) == 0 and res.fp16_share == 1.0
    assert ev.calls == 1  # the start and the floor in one round, nothing else


def test_unreachable_when_even_the_floor_fails(chain) -> None:
    class Broken(FakeEvaluator):
        def score(self, p):
            return 2.0  # e.g. a reference that ncnn cannot match even in fp32

    res = _search(chain, Broken({}))
    assert not res.reached and "every layer in fp32" in res.notes[0]
    assert res.chosen.names(FP32)  # the floor is returned


def test_refinement_respects_the_budget(chain) -> None:
    """Many small harms: the walk lowers the cheap groups; refinement adds more only while time is left."""
    harms = {n: 0.3 for n in CONVS}
    free = _search(chain, FakeEvaluator(harms), budget=Budget(None))
    ev = FakeEvaluator(harms)
    none = _search(chain, ev, budget=Budget(0.0))
    assert free.reached and none.reached
    assert free.chosen_verdict.score <= 1.0 and none.chosen_verdict.score <= 1.0
    assert free.fp16_share >= none.fp16_share
    assert "budget" in " ".join(none.notes)


def test_search_cost_is_logarithmic_in_the_walk(chain) -> None:
    """Sensitivity is one batch; the walk is a search over its points (2 probes per round), not a scan."""
    ev = FakeEvaluator({n: 0.2 * (i + 1) for i, n in enumerate(CONVS)}, {"c3": 0.0, "c6": 0.0})
    res = _search(chain, ev, budget=Budget(0.0))
    assert res.reached
    walk_probes = [p for p in res.points if p.label.startswith("walk")]
    assert len(walk_probes) <= 1 + 2 * 3  # the last point, then at most 3 rounds of 2 over 8 groups


def test_refinement_tests_groups_in_runs(chain) -> None:
    """The walk stops at its first group (c1 alone harms too much); the other groups pass on top of the floor
    but c5 does not: the refinement keeps every group but c1 and c5 in fp16, in runs that double while they pass
    and halve around c5 — fewer evaluations than groups (in pairs plus their union it took three per two)."""
    from ncnnpass.passes.precision.search import Search

    g, macs = chain
    cands = [ly.name for ly in g.layers if ly.type != "Input"]
    ev = FakeEvaluator({"c1": 2.0, "c5": 1.5, **{n: 0.05 for n in CONVS if n not in ("c1", "c5")}})
    s = Search(ev, g, cands, macs, groups=8, workers=2)
    s.order()
    s.walk.sort(key=lambda grp: grp.layers[0] != "c1")  # c1's group first: the walk stops at 0
    chosen, verdict = s.find()
    assert s.j == 0 and verdict.ok
    assert set(chosen.names(FP32)) == {"c1", "c5"}
    refinement = [p for p in s.points if p.label.startswith("walk 0 + ")]
    assert any("groups)" in p.label and p.verdict.ok for p in refinement)  # a run of several groups kept whole
    assert len(s.walk) - 1 == 7 and len(refinement) == 3  # runs of 2 and 4 kept, c5 alone missed


def test_refinement_cuts_the_groups_that_stay_fp32_in_halves(chain) -> None:
    """Only c4 harms, in the group c4..c5: the refinement tries that group's halves and keeps c4 alone fp32 (the
    whole group before); halves split a group by MACs, and a group with one MAC-carrying layer is not cut."""
    from ncnnpass.passes.precision.search import halves

    g, macs = chain
    cands = [ly.name for ly in g.layers if ly.type != "Input"]
    groups = make_groups(g, cands, macs, 2)
    wide = next(grp for grp in groups if grp.layers == ["c2", "c3", "c4", "c5"])
    assert [(h.layers, h.winograd) for h in halves(wide, macs)] == [(["c2", "c3"], ["c3"]), (["c4", "c5"], [])]
    assert halves(groups[0], macs) == [] and halves(groups[-1], macs) == []  # c1 alone; the MAC-free head
    ev = FakeEvaluator({"c4": 2.0, **{n: 0.05 for n in CONVS if n != "c4"}})
    res = search(ev, g, cands, macs, groups=3, workers=2)
    assert any(grp.layers == ["c4", "c5"] for grp in res.groups)
    assert res.reached and res.chosen.names(FP32) == ["c4"]
    assert res.fp16_share == pytest.approx(1 - macs["c4"] / sum(macs.values()))


def test_a_refined_choice_steps_back_along_the_refinement(chain) -> None:
    """The walk stops at its first group (c1); the refinement keeps the 7 others, in runs. The gate sees harm in
    the group kept last only: the step back raises the refinement's groups from the last kept, by bisection,
    and keeps the other 6 in fp16 (the walk's point below the refinement keeps 0 of them)."""
    from ncnnpass.passes.precision.checks import pass_gate
    from ncnnpass.passes.precision.search import Search

    g, macs = chain
    cands = [ly.name for ly in g.layers if ly.type != "Input"]
    s = Search(FakeEvaluator({"c1": 2.0, **{n: 0.05 for n in CONVS if n != "c1"}}), g, cands, macs, groups=8)
    s.order()
    s.walk.sort(key=lambda grp: grp.layers[0] != "c1")
    chosen, verdict = s.find()
    assert s.j == 0 and len(s.refined) == 7 and chosen.names(FP32) == ["c1"]
    last = s.refined[-1]

    class Gated(FakeEvaluator):
        target = "vulkan"

        def evaluate(self, placements, part="calibration", count=None):
            out = super().evaluate(placements, part, count)
            if part == "gate":
                out = [Verdict(False, 9.0, {}, ["off"], 200) if any(p.choice(n) == FP16 for n in last.layers)
                       else v for p, v in zip(placements, out, strict=True)]
            return out

    s.ev = Gated({"c1": 2.0})
    notes: list[str] = []
    stepped, _, gated = pass_gate(s.ev, s, chosen, verdict, Budget(None), notes, print, mendable=False)
    assert gated.ok and "along the refinement to 6 of its 7" in notes[0]
    assert set(stepped.names(FP32)) == {"c1", *last.layers}
    assert len(s.refined) == 6 and last not in s.refined  # a later step back starts there
    assert fp16_share(macs, stepped) > fp16_share(macs, s.at(s.j))
    # not monotone: raising the first group kept breaks the calibration lines (the walk point below the choice
    # misses where the choice passed); the step back comes down from the choice, not up from the walk point
    s.refined = [*s.refined, last]
    first = s.refined[0]

    class NotMonotone(Gated):
        def evaluate(self, placements, part="calibration", count=None):
            out = super().evaluate(placements, part, count)
            return [Verdict(False, 5.0, {}, ["off"], 32) if part == "calibration" and all(
                p.choice(n) == FP32 for n in first.layers) else v for p, v in zip(placements, out, strict=True)]

    s.ev = NotMonotone({"c1": 2.0})
    notes = []
    again, _, gated = pass_gate(s.ev, s, chosen, verdict, Budget(None), notes, print, mendable=False)
    assert gated.ok and "along the refinement to 6 of its 7" in notes[0] and again == stepped


def test_placement_forms_and_choices(chain) -> None:
    g, macs = chain
    assert choices_for(g.layer("c3"), "arm") == (FP16, NOWINO, ARITH, FP32)
    assert choices_for(g.layer("c1"), "arm") == (FP16, ARITH, FP32)
    assert choices_for(g.layer("sm"), "arm") == (FP16, FP32)  # ARM's Softmax ignores bit 0
    assert choices_for(g.layer("sm"), "vulkan") == (FP16, ARITH, FP32)
    p = Placement.of({"c2": FP32, "c3": NOWINO, "c5": ARITH, "c6": FP16})
    placed = apply_placement(g, p)
    assert [placed.layer(n).featmask for n in ("c2", "c3", "c5", "c6")] == [23, 64, 1, 0]
    assert g.layer("c2").featmask == 0  # the input graph is untouched
    assert unsafe_edges(placed) == []  # c2 reads an fp16 blob: a Dropout boundary went in front
    assert any(ly.type == "Dropout" for ly in placed.layers)
    assert existing_placement(placed).as_dict() == {"c2": FP32, "c3": NOWINO, "c5": ARITH}
    total = sum(macs.values())
    assert fp16_share(macs, p) == pytest.approx(1 - (macs["c2"] + macs["c5"]) / total)
    # on the GPU, layers that run on the CPU (no Vulkan implementation) do not count as fp16 there
    assert fp16_share(macs, p, gpu=True, cpu_layers=["c3"]) == pytest.approx(
        1 - (macs["c2"] + macs["c5"] + macs["c3"]) / total)
    with pytest.raises(ValueError):
        Placement.of({"c1": "half"})


def test_verdicts_per_kind() -> None:
    c = Criteria(conf_tolerance=5e-3)
    rec = {"lines": 10, "identical": 10, "identical_share": 1.0, "max_conf_change": 4e-3, "mean_conf_change": 1e-3,
           "drop_score_crossings": 0, "max_prob_diff": 0.1}
    assert c.judge("rec", rec, 10).ok
    assert not c.judge("rec", {**rec, "identical": 9}, 10).ok
    assert not c.judge("rec", {**rec, "drop_score_crossings": 1}, 10).ok
    bad = c.judge("rec", {**rec, "max_conf_change": 6e-3}, 10)
    assert not bad.ok and "6.00e-03" in bad.reasons[0]
    assert not c.judge("rec", rec, 10, nonfinite=1).ok
    det = {"pages": 3, "f": 0.995, "flipped_share": 1e-5, "flipped_pixels": 3, "pages_identical": 2}
    assert c.judge("det", det, 3).ok and not c.judge("det", {**det, "f": 0.98}, 3).ok
    cls = {"lines": 4, "agreement": 4, "agreement_share": 1.0, "max_score_change": 0.2, "rotation_flips": 0}
    assert c.judge("cls", cls, 4).ok and not c.judge("cls", {**cls, "agreement": 3}, 4).ok
    assert not c.judge("cls", {**cls, "rotation_flips": 1}, 4).ok  # the crop turned (or not) differently
    # the score orders: a changed string outweighs any confidence change within tolerance
    assert c.judge("rec", {**rec, "identical": 9}, 10).score > c.judge("rec", rec, 10).score


def test_pareto_front_and_files(chain, tmp_path) -> None:
    ev = FakeEvaluator({"c4": 2.0, "sm": 5.0, "c7": 0.05, "c2": 0.05})
    res = _search(chain, ev)
    fr = front(res.curve())
    assert fr and all(a.fp16_share <= b.fp16_share for a, b in zip(fr, fr[1:], strict=False))
    chosen = next(p for p in res.points if p.placement == res.chosen)
    js, png = write_curve(tmp_path / "curve", "rec", res.points, chosen, threshold=5e-3)
    data = json.loads(js.read_text())
    assert data["chosen"]["fp16_share"] == pytest.approx(res.fp16_share)
    assert len(data["points"]) == len(res.curve())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


BODY = """
Input in0 0 1 in 0=20 1=10 2=3
Convolution c1 1 1 in a 0=8 1=3 3=2 4=1 5=1 6=216
ConvolutionDepthWise dw 1 1 a b 0=8 1=3 4=1 5=1 6=72 7=8
Pooling gap 1 1 b g 0=1 4=1
InnerProduct fc 1 1 g f 0=4 1=1 2=32
ReLU r 1 1 f out
"""


def test_macs_from_params_and_shapes() -> None:
    from ncnnpass.ir import runtime
    from ncnnpass.passes.precision import fp16_mac_share, macs_per_layer

    g = fill_weights(model(BODY), seed=0)
    macs = macs_per_layer(g, runtime.infer_shapes(g, (3, 10, 20)))
    # c1: stride 2 -> 8x5x10 output, 216 weights per output pixel; dw: 72 per pixel at 5x10; fc: 32
    assert macs == {"in0": 0, "c1": 216 * 50, "dw": 72 * 50, "gap": 0, "fc": 32, "r": 0}
    total = 216 * 50 + 72 * 50 + 32
    assert fp16_mac_share(macs, {"c1"}) == pytest.approx(1 - 216 * 50 / total)
    assert fp16_mac_share(macs, set()) == 1.0


def _probs(rows):
    return np.array(rows, dtype=np.float32)


def test_decision_margin_counts_only_frames_that_change_the_string() -> None:
    from ncnnpass.passes.precision.evaluator import decision_margin

    # a, blank(0.55 vs a 0.45), a -> "aa": turning the middle frame into 'a' merges it to "a" (margin 0.1)
    assert decision_margin("rec", _probs([[0.1, 0.9, 0], [0.55, 0.45, 0], [0.1, 0.9, 0]])) == pytest.approx(0.1)
    # a, a, a -> "a": the ends may turn blank without changing the string; only the middle frame counts
    assert decision_margin("rec", _probs([[0.3, 0.7, 0], [0.1, 0.9, 0], [0.2, 0.8, 0]])) == pytest.approx(0.8)
    assert decision_margin("cls", _probs([[0.6, 0.4]])) == pytest.approx(0.2)
    assert decision_margin("det", _probs([[0.6, 0.4]])) == float("inf")


def test_frame_risk_reads_consumed_margins() -> None:
    from ncnnpass.passes.precision.evaluator import frame_risk

    ref = _probs([[0.1, 0.9, 0], [0.6, 0.4, 0]])
    assert frame_risk(ref, ref) == pytest.approx(0.0, abs=1e-6)
    half = _probs([[0.1, 0.9, 0], [0.55, 0.45, 0]])  # the second frame lost half its margin
    assert frame_risk(ref, half) == pytest.approx(0.5, abs=1e-6)
    flipped = _probs([[0.1, 0.9, 0], [0.4, 0.6, 0]])
    assert frame_risk(ref, flipped) >= 1.0


def test_stress_set_takes_the_most_fragile_lines_but_not_what_the_goal_gives_up() -> None:
    from ncnnpass.passes.precision.evaluator import Part, stressed

    # 200 one-frame "lines" with margins 0.001 .. 0.2: the hardest 1 (0.5% of 200) is given up, then the
    # margin floor (2e-3) drops one more; the 6 hardest after that come first, then 2 typical ones
    margins = np.linspace(0.001, 0.2, 200)
    refs = [_probs([[0.5 - m / 2, 0.5 + m / 2]]) for m in margins]
    part = Part("pool", list(range(200)), refs)  # inputs stand in as indices
    got = stressed("cls", part, 8, "calibration")
    assert got.inputs[:6] == [2, 3, 4, 5, 6, 7]
    assert got.inputs[6:] == [0, 1]  # the first others in pool order (typical lines)


def test_fallbacks_skip_placements_that_failed_anywhere() -> None:
    from ncnnpass.passes.precision.checks import fallbacks, next_fallback
    from ncnnpass.passes.precision.search import Point

    def pt(label, share, ok, names):
        return Point(label, Placement.uniform(names, FP32), share, Verdict(ok, 0.0, {}))

    pts = [pt("a", 0.99, True, ["x"]), pt("a'", 0.99, False, ["x"]), pt("b", 0.97, True, ["y"]),
           pt("c", 0.90, True, ["z"]), pt("d", 0.50, True, ["w"]), pt("e", 0.995, True, ["v"])]
    pending = fallbacks(pts, 0.995)
    assert [p.label for p in pending] == ["b", "c", "d"]  # "a" failed on another part; "e" is not below
    assert next_fallback(pending, 0.995).label == "c"  # at least 5 points of share lower
    assert [p.label for p in pending] == ["d"]


def _proxy_search(chain):
    """A search on a proxy that sees c4's and the head's harm only: its result and its state."""
    g, macs = chain
    cands = [ly.name for ly in g.layers if ly.type != "Input"]
    state: list = []
    res = search(FakeEvaluator({"c4": 2.0, "sm": 5.0}), g, cands, macs, groups=8, workers=2, budget=Budget(0.0),
                 state=state)
    return res, state[0]


def test_target_verification_steps_back_along_the_walk(chain) -> None:
    """The proxy passes a placement the target does not (here the target also suffers from c5 in fp16): the
    verification bisects the walk below the choice and keeps the most fp16 point that passes there."""
    from ncnnpass.passes.precision.checks import verify_on_target

    _, macs = chain
    res, s = _proxy_search(chain)
    assert res.chosen.choice("c5") == FP16 and res.chosen.choice("c4") == FP32

    class Target(FakeEvaluator):
        target = "arm"

    phone = Target({"c4": 2.0, "sm": 5.0, "c5": 3.0})
    notes: list[str] = []
    chosen, _, verdict = verify_on_target(phone, s, res.chosen, res.chosen_verdict, Budget(None), notes, print)
    assert verdict.ok and chosen.choice("c5") != FP16  # c5 kept fp32 by stepping back
    lowered = [n for n in CONVS if chosen.choice(n) == FP16]
    best = max((j for j in range(len(s.walk) + 1) if phone.score(s.at(j)) <= 1.0), key=lambda j: fp16_share(macs, s.at(j)))
    assert fp16_share(macs, chosen) == pytest.approx(fp16_share(macs, s.at(best)))  # the best walk point below
    assert "stepped back" in notes[0] and lowered


def test_target_verification_keeps_the_file_right_on_the_search_target(chain) -> None:
    """With a check on the search target (the phone's GPU when it screens for the phone CPU), a walk point
    the target passes but the GPU does not is not chosen, and the target never runs a point the GPU failed:
    the file the repair writes stays right on both paths."""
    from ncnnpass.passes.precision.checks import verify_on_target

    _, macs = chain
    res, s = _proxy_search(chain)

    class Target(FakeEvaluator):
        target = "arm"

        def evaluate(self, placements, part="calibration", count=None):
            self.seen = [*getattr(self, "seen", []), *placements]
            return super().evaluate(placements, part, count)

    phone = Target({"c4": 2.0, "sm": 5.0, "c5": 3.0})
    gpu = FakeEvaluator({"c4": 2.0, "sm": 5.0, "c1": 3.0})  # the GPU also needs c1 fp32
    unchecked, _, _ = verify_on_target(Target({"c4": 2.0, "sm": 5.0, "c5": 3.0}), s, res.chosen,
                                        res.chosen_verdict, Budget(None), [], print)
    chosen, _, verdict = verify_on_target(phone, s, res.chosen, res.chosen_verdict, Budget(None), [], print,
                                           lambda p: gpu.evaluate([p])[0])
    assert verdict.ok and phone.score(chosen) <= 1.0 and gpu.score(chosen) <= 1.0
    assert all(gpu.score(p) <= 1.0 for p in phone.seen[1:])  # after the first (the choice), only GPU-passing points
    walk = [s.at(j) for j in range(len(s.walk) + 1)]
    both = [p for p in walk if phone.score(p) <= 1.0 and gpu.score(p) <= 1.0]
    assert fp16_share(macs, chosen) == pytest.approx(max(fp16_share(macs, p) for p in both))
    assert gpu.score(unchecked) > 1.0  # without the check the phone's choice would break the GPU


def test_no_winograd_lowers_every_winograd_conv_as_31_64(chain) -> None:
    """The proxy cannot see the target's fp16 winograd loss (here: none of c3/c6's harm shows on it): with
    ``no_winograd`` the search never evaluates those convolutions in plain fp16, starts from the model with
    them as 31=64, and chooses them so."""
    ev = FakeEvaluator({"sm": 5.0})
    seen: list[Placement] = []
    inner = ev.evaluate

    def spy(placements, part="calibration", count=None):
        seen.extend(placements)
        return inner(placements, part, count)

    ev.evaluate = spy
    res = _search(chain, ev, base=Placement.uniform(["sm"], FP32), no_winograd=True)
    assert res.start.label == "as given, winograd off" and res.reached
    assert all(p.choice(n) in (NOWINO, FP32) for p in seen for n in ("c3", "c6"))
    assert res.chosen.choice("c3") == NOWINO and res.chosen.choice("c6") == NOWINO
    plain = _search(chain, FakeEvaluator({"sm": 5.0}), base=Placement.uniform(["sm"], FP32))
    assert plain.start.label == "as given" and plain.chosen.choice("c3") == FP16  # without it: winograd kept


def test_the_target_decides_whether_winograd_is_the_loss(chain) -> None:
    from ncnnpass.passes.precision.checks import winograd_is_the_loss

    g, _ = chain
    cands = [ly.name for ly in g.layers if ly.type != "Input"]

    class Target(FakeEvaluator):
        target = "arm"

    notes: list[str] = []
    # the target loses on c3's fp16 winograd, and 31=64 fixes it
    assert winograd_is_the_loss(Target({"c3": 3.0}, nowino_harm={"c3": 0.0}), g, Placement(), cands, notes, print)
    assert "31=64" in notes[0]
    # 31=64 does not help, the model passes as given, or the A57 (no fp16 arithmetic): no
    assert not winograd_is_the_loss(Target({"c3": 3.0}), g, Placement(), cands, [], print)
    assert not winograd_is_the_loss(Target({"c3": 3.0}, nowino_harm={"c3": 2.0}), g, Placement(), cands, [], print)
    assert not winograd_is_the_loss(Target({"c3": 0.5}, nowino_harm={"c3": 0.0}), g, Placement(), cands, [], print)
    a57 = Target({"c3": 3.0}, nowino_harm={"c3": 0.0})
    a57.target = "arm-a57"
    assert not winograd_is_the_loss(a57, g, Placement(), cands, [], print) and a57.calls == 0
    # with the MACs: checked only when the winograd convolutions hold at least 10% of them
    macs = {n: 100 for n in cands}
    small = Target({"c3": 3.0}, nowino_harm={"c3": 0.0})
    assert not winograd_is_the_loss(small, g, Placement(), cands, [], print, {**macs, "c3": 5, "c6": 5})
    assert small.calls == 0
    assert winograd_is_the_loss(Target({"c3": 3.0}, nowino_harm={"c3": 0.0}), g, Placement(), cands, [], print, macs)


def test_the_gate_judges_lines_as_a_share() -> None:
    """A gate (hundreds of held-out lines) fails a placement only when its lines off show, at 90% confidence, a
    rate above the goal's 0.5% (one-sided binomial); a line is off when its string changes or it crosses
    drop_score; its confidence change is not counted there (over hundreds of lines it measures the model's own
    noise floor)."""
    from math import comb

    c = Criteria(conf_tolerance=5e-3)

    def tail(n: int, k: int) -> float:  # P(X >= k), X ~ Binomial(n, 0.005), written out independently
        return sum(comb(n, i) * 0.005 ** i * 0.995 ** (n - i) for i in range(k, n + 1))

    for n in (12, 24, 100, 200, 400):
        k = c.gate_allows(n)
        assert tail(n, k) >= 0.1 and tail(n, k + 1) < 0.1, n
    assert [c.gate_allows(n) for n in (12, 100, 200)] == [0, 1, 2]
    base = {"lines": 200, "identical": 198, "identical_share": 0.99, "max_conf_change": 2e-2,
            "mean_conf_change": 1e-3, "drop_score_crossings": 0}
    two_off = [(False, 1e-4)] * 198 + [(True, 2e-2), (True, 1e-4)]
    v = c.judge("rec", {**base, "per_line": two_off}, 200, part="gate")
    assert v.ok and v.numbers["lines_off"] == 2 and v.numbers["lines_off_allowed"] == 2
    assert "per_line" not in v.numbers and "lines off 2 (2 allowed)" in v.headline()
    three_off = [(False, 1e-4)] * 197 + [(True, 1e-4)] * 3
    bad = c.judge("rec", {**base, "per_line": three_off}, 200, part="gate")
    assert not bad.ok and "3 of 200 lines" in bad.reasons[0]
    # confidence changes beyond the tolerance alone do not count there; without per-line numbers the largest fails
    assert c.judge("rec", {**base, "per_line": [(False, 2e-2)] * 200}, 200, part="gate").ok
    assert not c.judge("rec", {**base, "identical": 200}, 200, part="confirm").ok
    # 12 lines allow none; NaN fails whatever the count
    assert not c.judge("rec", {**base, "per_line": three_off[-12:]}, 12, part="gate").ok
    assert not c.judge("rec", {**base, "per_line": [(False, 0.0)] * 200}, 200, nonfinite=1, part="gate").ok
    cls = {"lines": 200, "agreement": 199, "agreement_share": 0.995, "max_score_change": 0.1, "rotation_flips": 0}
    assert c.judge("cls", {**cls, "per_line": [(False, 1e-3)] * 199 + [(True, 0.1)]}, 200, part="gate").ok
    assert c.judge("cls", {**cls, "per_line": [(False, 0.1)] * 200}, 200, part="gate").ok  # cls: no score limit
    assert Criteria(gate_share=0.0).judge("cls", {**cls, "per_line": [(False, 1e-3)] * 199 + [(True, 0.1)]}, 200,
                                          part="gate").ok is False
    with pytest.raises(Exception, match="gate"):
        Criteria(gate_share=1.0)


def test_held_out_confidence_is_judged_as_a_share_and_calibration_line_by_line() -> None:
    """On held-out parts the lines whose confidence moves beyond the tolerance (string unchanged) are counted
    with the gate's binomial rule (24 lines allow 1, 8 allow none); the calibration part keeps the per-line
    limit; a changed string still fails any part; without per-line numbers the largest change decides."""
    c = Criteria(conf_tolerance=5e-3)
    base = {"lines": 24, "identical": 24, "identical_share": 1.0, "max_conf_change": 3e-2,
            "mean_conf_change": 1.5e-3, "drop_score_crossings": 0}
    one = [(False, 1e-4)] * 23 + [(False, 3e-2)]
    two = [(False, 1e-4)] * 22 + [(False, 3e-2), (False, 6e-3)]
    v = c.judge("rec", {**base, "per_line": one}, 24, part="confirm")
    assert v.ok and (v.numbers["conf_beyond"], v.numbers["conf_beyond_allowed"]) == (1, 1)
    assert v.failing == (23,) and "1 beyond the confidence tolerance (1 allowed)" in v.headline()
    bad = c.judge("rec", {**base, "per_line": two}, 24, part="confirm-2")
    assert not bad.ok and bad.failing == (22, 23) and "2 of 24 lines change confidence" in bad.reasons[0]
    assert not c.judge("rec", {**base, "per_line": one}, 24, part="calibration").ok  # every line there
    assert not c.judge("rec", {**base, "per_line": one}, 24, part="calibration", pool=160).ok  # a pool or not
    assert not c.judge("rec", {**base, "per_line": one[-8:]}, 8, part="verify").ok  # 8 lines allow none
    changed = {**base, "identical": 23, "per_line": [(False, 1e-4)] * 23 + [(True, 1e-4)]}
    assert not c.judge("rec", changed, 24, part="confirm").ok
    assert not c.judge("rec", base, 24, part="confirm").ok  # no per-line numbers: the largest change decides


def test_the_riskiest_lines_of_a_pool_are_judged_as_the_gate_would_judge_the_pool() -> None:
    """A part drawn as the riskiest of a larger held-out pool fails when its lines off (string or drop_score;
    cls: label or rotation) or its lines beyond the confidence tolerance are more than the gate allows on the
    pool (64 lines allow 1, 200 allow 2), less the pool's lines known off already; the calibration part
    ignores a pool (its strings stay per line)."""
    c = Criteria(conf_tolerance=5e-3)
    base = {"lines": 8, "identical": 7, "identical_share": 7 / 8, "max_conf_change": 1.6e-1,
            "mean_conf_change": 2e-2, "drop_score_crossings": 0}
    one_off = [(False, 1e-4)] * 6 + [(False, 8e-3), (True, 1.6e-1)]
    assert not c.judge("rec", {**base, "per_line": one_off}, 8, part="verify").ok  # itself: none of 8
    v = c.judge("rec", {**base, "per_line": one_off}, 8, part="verify", pool=64)
    assert v.ok and (v.numbers["lines_off"], v.numbers["lines_off_allowed"], v.numbers["stands_for"]) == (1, 1, 64)
    assert v.failing == (6, 7) and "lines off 1 (1 allowed of the 64 they stand for)" in v.headline()
    two_off = [(False, 1e-4)] * 6 + [(True, 8e-3), (True, 1.6e-1)]
    bad = c.judge("rec", {**base, "identical": 6, "per_line": two_off}, 8, part="verify", pool=64)
    assert not bad.ok and "2 of 8 lines change for users" in bad.reasons[0] and "64 lines" in bad.reasons[0]
    assert c.judge("rec", {**base, "identical": 6, "per_line": two_off}, 8, part="verify", pool=200).ok
    assert not c.judge("rec", {**base, "per_line": one_off}, 8, part="verify", pool=200, pool_off=2).ok
    assert not c.judge("rec", {**base, "per_line": one_off}, 8, part="calibration", pool=160).ok
    quiet = {**base, "max_conf_change": 1e-4, "mean_conf_change": 1e-5}  # 1 of 8 strings changed, no per-line
    assert not c.judge("rec", quiet, 8, part="verify", pool=64).ok  # numbers: every string counts, as before
    two_beyond = [(False, 1e-4)] * 6 + [(False, 8e-3), (False, 9e-3)]
    assert not c.judge("rec", {**base, "identical": 8, "per_line": two_beyond}, 8, part="verify", pool=64).ok
    gate = c.judge("rec", {**base, "per_line": two_off}, 8, part="gate-at-risk", pool=200)
    assert gate.ok and gate.numbers["stands_for"] == 200
    assert not c.judge("rec", {**base, "per_line": two_off}, 8, part="gate-at-risk", pool=200, pool_off=1).ok
    cls = {"lines": 16, "agreement": 15, "agreement_share": 15 / 16, "max_score_change": 0.2, "rotation_flips": 0,
           "max_prob_diff": 0.2}
    flips = [(False, 1e-3)] * 15 + [(True, 0.2)]
    assert not c.judge("cls", {**cls, "per_line": flips}, 16, part="verify").ok
    assert c.judge("cls", {**cls, "per_line": flips}, 16, part="verify", pool=64).ok


def test_the_gate_steps_back_to_a_point_that_passes_it(chain) -> None:
    """The choice passes the first held-out samples but not the gate (a harm that shows on hundreds of lines
    only, here c5's): the most fp16 walk point below it that passes both is chosen, and a later step back on the
    target starts below it."""
    from ncnnpass.passes.precision.checks import pass_gate

    _, macs = chain
    res, s = _proxy_search(chain)
    assert res.chosen.choice("c5") == FP16

    class Gated(FakeEvaluator):
        target = "vulkan"

        def score(self, p):
            return super().score(p) + (3.0 if self._part == "gate" and p.choice("c5") == FP16 else 0.0)

        def evaluate(self, placements, part="calibration", count=None):
            self._part = part
            return super().evaluate(placements, part, count)

    ev = Gated({"c4": 2.0, "sm": 5.0})
    notes: list[str] = []
    chosen, _, gated = pass_gate(ev, s, res.chosen, res.chosen_verdict, Budget(None), notes, print)
    assert gated.ok and chosen.choice("c5") != FP16 and "the gate" in notes[0]
    walk = [s.at(j) for j in range(len(s.walk) + 1)]
    passing = [p for p in walk if p.choice("c5") != FP16 and p.choice("c4") != FP16 and p.choice("sm") != FP16]
    assert fp16_share(macs, chosen) == pytest.approx(max(fp16_share(macs, p) for p in passing))
    assert s.at(s.j) == chosen  # the search's position follows the step back
    # a walk point the gate would pass but the calibration lines do not (the walk is not monotone) is not chosen
    class CalibrationToo(Gated):
        def score(self, q):
            return super().score(q) + (3.0 if self._part == "calibration" and q == chosen else 0.0)

    s.j = len(s.walk)
    lower, _, v2 = pass_gate(CalibrationToo({"c4": 2.0, "sm": 5.0}), s, res.chosen, res.chosen_verdict, Budget(None),
                         [], print)
    assert v2.ok and lower != chosen and fp16_share(macs, lower) < fp16_share(macs, chosen)
    s.j = next(j for j in range(len(s.walk) + 1) if s.at(j) == chosen)
    # a choice that passes the gate is kept as it is
    same, _, v = pass_gate(Gated({"c4": 2.0, "sm": 5.0}), s, chosen, res.chosen_verdict, Budget(None), [], print)
    assert same == chosen and v.ok


class LineEvaluator(FakeEvaluator):
    """Per-sample judging over real :class:`Part` objects (samples are their indices): sample ``i`` of a part
    is off when the harms in ``lines[part][i]`` of the layers left in fp16 (``"!name"``: of a layer *not* in
    fp16; raising a layer can move other lines) sum to more than 0.5. A gate part (name ``gate*``) passes with
    as many lines off as :meth:`Criteria.gate_allows` permits, others with none; the verdict names the samples
    off, as the real evaluator's does."""

    def __init__(self, harm, parts, lines, target="vulkan"):
        super().__init__(harm)
        from ncnnpass.passes.precision.evaluator import Part

        self.parts = {name: Part(name, list(range(n)), list(range(n))) for name, n in parts.items()}
        self.lines = lines
        self.target = target
        self.seen: list[tuple[Placement, str]] = []

    def line_harm(self, p, part, i):
        harms = self.lines.get(part if part in self.lines else part.split("-")[0], {}).get(i, {})
        return sum(h for name, h in harms.items()
                   if (p.choice(name[1:]) != FP16 if name.startswith("!") else p.choice(name) == FP16))

    def evaluate(self, placements, part="calibration", count=None):
        out = []
        ids = self.parts[part].inputs
        for p in placements:
            self.seen.append((p, part))
            harms = [self.line_harm(p, part, i) for i in ids]
            off = tuple(k for k, h in enumerate(harms) if h > 0.5)
            allowed = Criteria().gate_allows(len(ids)) if part.startswith("gate") else 0
            ok = self.score(p) <= 1.0 and len(off) <= allowed
            out.append(Verdict(ok, self.score(p) + sum(harms), {}, [] if ok else ["off"], len(ids), failing=off))
        return out


def test_a_gate_miss_on_a_few_lines_is_mended_not_stepped_back(chain) -> None:
    """Three of the gate's 200 lines change only while c5 is fp16: the mend keeps c5's group fp32 (found on those
    3 lines alone), and judges the result on the gate's other 197 lines, which it was not chosen on. The choice
    keeps every other group the search lowered, more fp16 than any walk point the step back could reach."""
    from ncnnpass.passes.precision.checks import pass_gate

    _, macs = chain
    res, s = _proxy_search(chain)
    assert res.chosen.choice("c5") == FP16
    off = {5: {"c5": 1.0}, 17: {"c5": 1.0}, 100: {"c5": 1.0}}
    ev = LineEvaluator({"c4": 2.0, "sm": 5.0}, {"calibration": 32, "confirm": 24, "gate": 200}, {"gate": off})
    notes: list[str] = []
    chosen, cal, gated = pass_gate(ev, s, res.chosen, res.chosen_verdict, Budget(None), notes, print)
    assert gated.ok and gated.samples == 197 and "mended" in notes[0]
    assert chosen == res.chosen.merged({"c5": FP32})  # exactly the one group raised
    walk = [s.at(j) for j in range(len(s.walk) + 1)]
    stepped = max(fp16_share(macs, p) for p in walk if p.choice("c5") != FP16 and p.choice("c4") != FP16
                  and p.choice("sm") != FP16)
    assert fp16_share(macs, chosen) > stepped
    mend_parts = {part for _, part in ev.seen if "-mend" in part}
    assert mend_parts and all(len(ev.parts[q]) == 3 for q in mend_parts)  # chosen on the 3 lines off only
    assert cal.ok and any(p.label.startswith("mended") and p.placement == chosen for p in s.points)
    # everything the choice passed is judged again on the mended placement
    assert {part for p, part in ev.seen if p == chosen} >= {"calibration", "confirm"}


def test_a_gate_mend_must_pass_fresh_gate_lines_it_never_saw(chain) -> None:
    """The mend is chosen on the gate's lines off: it passes the gate's other lines, and must then pass as many
    fresh held-out lines. When c7 (fp16 in the choice) changes 4 of 200 fresh lines (the mend fitted the gate's 3),
    the choice steps back instead; when the fresh lines pass, the gate's verdict is theirs."""
    from ncnnpass.passes.precision.checks import FRESH_GATE, pass_gate

    res, s = _proxy_search(chain)
    sizes = {"calibration": 32, "confirm": 24, "gate": 200, FRESH_GATE: 200}
    gate = {"gate": {5: {"c5": 1.0}, 17: {"c5": 1.0}, 100: {"c5": 1.0}}}
    for fresh_off, mended in ((4, False), (1, True)):
        fresh = {FRESH_GATE: {i: {"c7": 1.0} for i in range(fresh_off)}}
        ev = LineEvaluator({"c4": 2.0, "sm": 5.0}, sizes, {**gate, **fresh})
        notes: list[str] = []
        s.j = len(s.walk)
        s.refined = []
        chosen, _, gated = pass_gate(ev, s, res.chosen, res.chosen_verdict, Budget(None), notes, print)
        assert (res.chosen.merged({"c5": FP32}), FRESH_GATE) in ev.seen  # the mended choice ran on the fresh lines
        assert ("mended" in notes[0]) == mended and gated.ok
        if mended:
            assert chosen == res.chosen.merged({"c5": FP32}) and gated.samples == 200 and "200 fresh" in notes[0]
        else:
            assert "stepped back" in notes[0] and chosen.choice("c5") != FP16 and chosen.choice("c7") != FP16


def test_a_held_out_miss_on_a_line_is_mended_then_judged_on_the_next_held_out_lines(chain) -> None:
    """One of the first 24 held-out lines is off while c5 is fp16: the mend keeps c5's group fp32 (chosen on
    that line), the result must pass the calibration and is judged on the next 24 held-out lines — no second
    search (with the budget spent on the first, it stopped at its walk). When those next lines miss too, the
    second search runs as before."""
    from ncnnpass.passes.precision.checks import confirm_held_out

    res, s = _proxy_search(chain)
    assert res.chosen.choice("c5") == FP16
    parts = {"calibration": 32, "confirm": 24, "confirm-2": 24, "calibration+confirm": 56}
    ev = LineEvaluator({"c4": 2.0, "sm": 5.0}, parts, {"confirm": {3: {"c5": 1.0}}})
    s.ev = ev
    notes: list[str] = []
    chosen, cal, held, passed = confirm_held_out(ev, s, res.chosen, res.chosen_verdict, ev.parts["confirm-2"],
                                                 Budget(None), notes, print)
    # it passed each part at that part's own tolerance (a step back must pass the same)
    assert passed == ["calibration", "confirm", "confirm-2"] and held.ok and held.samples == 24 and cal.ok
    assert chosen == res.chosen.merged({"c5": FP32}) and "mended" in notes[0]
    assert {q for _, q in ev.seen if "-mend" in q} and not any(q == "calibration+confirm" for _, q in ev.seen)
    # the next held-out lines see c5 too: the mend is not taken, the search runs again on calibration + confirm
    class NextMisses(LineEvaluator):
        def evaluate(self, placements, part="calibration", count=None):
            out = super().evaluate(placements, part, count)
            return [Verdict(False, 9.0, {}, ["off"], v.samples, failing=(0,)) if part == "confirm-2" and q == chosen
                    else v for q, v in zip(placements, out, strict=True)]

    ev2 = NextMisses({"c4": 2.0, "sm": 5.0}, parts, {"confirm": {3: {"c5": 1.0}}})
    s.ev = ev2
    _, _, held2, passed2 = confirm_held_out(ev2, s, res.chosen, res.chosen_verdict, ev2.parts["confirm-2"],
                                            Budget(None), [], print)
    assert passed2 == ["calibration+confirm", "confirm-2"] and any(q == "calibration+confirm" for _, q in ev2.seen)


def test_a_mend_may_leave_a_line_off_that_then_counts_against_it(chain) -> None:
    """PP-OCRv5's case: of 3 gate lines off, two come back with c5 fp32 and one (a near tie) only with most of
    the network fp32. The mend takes c5; the line still off stays in the judged lines (it counts against the
    mend), the two brought back leave: 1 off of 198, within the 2 allowed."""
    from ncnnpass.passes.precision.checks import pass_gate

    res, s = _proxy_search(chain)
    stubborn = {n: 0.2 for n in ("c1", "c2", "c3", "c5", "c6", "c7", "c8")}
    ev = LineEvaluator({"c4": 2.0, "sm": 5.0}, {"calibration": 32, "confirm": 24, "gate": 200},
                       {"gate": {7: stubborn, 30: {"c5": 1.0}, 31: {"c5": 1.0}}})
    notes: list[str] = []
    chosen, _, gated = pass_gate(ev, s, res.chosen, res.chosen_verdict, Budget(None), notes, print)
    assert chosen == res.chosen.merged({"c5": FP32}) and gated.ok and gated.samples == 198
    assert len(gated.failing) == 1 and "mended" in notes[0]


def test_a_mend_needing_two_groups_takes_the_two_closest(chain) -> None:
    """A line that changes while c5 *or* c7 is fp16: no single group brings it back, the two that came closest
    together do."""
    from ncnnpass.passes.precision.checks import pass_gate

    res, s = _proxy_search(chain)
    ev = LineEvaluator({"c4": 2.0, "sm": 5.0}, {"calibration": 32, "confirm": 24, "gate": 200},
                       {"gate": {i: {"c5": 0.6, "c7": 0.6} for i in (3, 9, 40)}})
    notes: list[str] = []
    chosen, _, gated = pass_gate(ev, s, res.chosen, res.chosen_verdict, Budget(None), notes, print)
    assert gated.ok and chosen == res.chosen.merged({"c5": FP32, "c7": FP32}) and "c5 + c7" in notes[0]


def test_too_many_lines_off_steps_back_and_rounds_use_at_most_max_samples(chain) -> None:
    """Mending is for a few samples: with 6 gate lines off the step back bisects the walk as before. Three lines
    off through c5, and three more that change once c5 is fp32 while c7 is fp16, need two rounds: with room
    for 5 samples the mend gives up (the second round would use 6), with room for 6 it raises c5 then c7 and
    judges on the 194 lines left."""
    from ncnnpass.passes.precision.checks import pass_gate
    from ncnnpass.passes.precision.mend import mend

    res, s = _proxy_search(chain)
    sizes = {"calibration": 32, "confirm": 24, "gate": 200}
    many = LineEvaluator({"c4": 2.0, "sm": 5.0}, sizes, {"gate": {i: {"c5": 1.0} for i in range(6)}})
    notes: list[str] = []
    s.j = len(s.walk)
    _, _, gated = pass_gate(many, s, res.chosen, res.chosen_verdict, Budget(None), notes, print)
    assert gated.ok and "stepped back" in notes[0] and not any("-mend" in q for _, q in many.seen)
    two = LineEvaluator({"c4": 2.0, "sm": 5.0}, sizes,
                        {"gate": {i: {"c5": 1.0} for i in (1, 2, 3)} | {i: {"!c5": 0.3, "c7": 0.3} for i in (50, 60, 70)}})
    (first,) = two.evaluate([res.chosen], "gate")
    assert first.failing == (1, 2, 3) and not first.ok
    assert mend(s, res.chosen, first, two, "gate", print, max_samples=5) is None
    fixed = mend(s, res.chosen, first, two, "gate", print, max_samples=6)
    assert fixed is not None and fixed.placement == res.chosen.merged({"c5": FP32, "c7": FP32})
    assert fixed.verdict.samples == 194 and fixed.used == 6 and fixed.raised == ["c5", "c7"]


def test_the_emulated_phone_miss_is_mended_with_the_gpu_check(chain) -> None:
    """The phone changes one verification line while c5 is fp16: the mend raises c5's group, found on that one
    line on the phone; the mended file must pass the GPU's check before the phone runs the rest, and does."""
    from ncnnpass.passes.precision.checks import verify_on_target

    _, macs = chain
    res, s = _proxy_search(chain)
    phone = LineEvaluator({"c4": 2.0, "sm": 5.0}, {"verify": 8}, {"verify": {2: {"c5": 1.0}}}, target="arm")
    gpu_seen: list[Placement] = []

    def gpu(p):
        gpu_seen.append(p)
        return FakeEvaluator({"c4": 2.0, "sm": 5.0}).evaluate([p])[0]

    notes: list[str] = []
    chosen, _, v = verify_on_target(phone, s, res.chosen, res.chosen_verdict, Budget(None), notes, print, gpu)
    assert v.ok and v.samples == 7 and chosen == res.chosen.merged({"c5": FP32}) and "mended" in notes[0]
    assert gpu_seen == [chosen]
    assert [len(phone.parts[q]) for p, q in phone.seen if "-mend" in q] == [1] * len(
        [q for _, q in phone.seen if "-mend" in q])


def test_a_gate_on_a_proxy_steps_back_instead_of_mending(chain) -> None:
    """``mendable=False`` (a gate on a proxy whose target does not then verify on the gate's riskiest lines): a
    miss steps back along the walk, as a mend that just passes the proxy's gate may leave the target short."""
    from ncnnpass.passes.precision.checks import pass_gate

    res, s = _proxy_search(chain)
    ev = LineEvaluator({"c4": 2.0, "sm": 5.0}, {"calibration": 32, "confirm": 24, "gate": 200},
                       {"gate": {i: {"c5": 1.0} for i in (5, 17, 100)}})
    notes: list[str] = []
    s.j = len(s.walk)
    chosen, _, gated = pass_gate(ev, s, res.chosen, res.chosen_verdict, Budget(None), notes, print, mendable=False)
    assert gated.ok and gated.samples == 200 and "stepped back" in notes[0]
    assert not any("-mend" in q for _, q in ev.seen) and chosen != res.chosen.merged({"c5": FP32})


def test_a_mend_that_breaks_what_the_choice_passed_takes_the_next_candidate(chain) -> None:
    """Raising a group moves other samples too (PP-OCRv3 on the emulated A76: the group that brought the phone's
    line back changed 2 of lavapipe's 56 lines). The line here comes back with c5 or c6 fp32; c5 is cheaper but
    the GPU's check fails with it fp32, so the mend takes c6."""
    from ncnnpass.passes.precision.checks import verify_on_target

    res, s = _proxy_search(chain)
    phone = LineEvaluator({"c4": 2.0, "sm": 5.0}, {"verify": 8}, {"verify": {2: {"c5": 0.3, "c6": 0.3}}}, target="arm")

    def gpu(p):
        ok = p.choice("c5") != FP32
        return Verdict(ok, 0.0 if ok else 2.0, {}, [] if ok else ["c5 fp32 moves 2 lines"], 56)

    notes: list[str] = []
    chosen, _, v = verify_on_target(phone, s, res.chosen, res.chosen_verdict, Budget(None), notes, print, gpu)
    assert v.ok and chosen == res.chosen.merged({"c6": FP32}) and "mended" in notes[0]


def test_verdicts_carry_per_line_risks_and_at_risk_picks_the_closest_to_changing() -> None:
    """A rec verdict carries each line's frame risk (as :func:`frame_risk` computes it); :func:`at_risk` picks
    the lines a candidate came closest to changing, riskiest first, without the lines it changed (its verdict
    counts them already) and with the reference's ties (margin below the floor) last."""
    from types import SimpleNamespace

    from ncnnpass.passes.measure.metrics import metric_for
    from ncnnpass.passes.precision.evaluator import Part, at_risk, frame_risk, judge_outputs

    def line(margin: float) -> np.ndarray:  # "a" then blank: the first frame decides, its margin as given
        return _probs([[0.5 - margin / 2, 0.5 + margin / 2, 0.0], [0.9, 0.1, 0.0]])

    refs = [line(m) for m in (0.4, 0.4, 0.4, 0.4, 0.001, 0.4)]
    # the candidate consumes 10%, 60%, 30%, all (the string changes), 50% of a tie, 90% of the margin
    used = (0.1, 0.6, 0.3, 1.5, 0.5, 0.9)
    cands = [line(m * (1 - u)) for m, u in zip((0.4, 0.4, 0.4, 0.4, 0.001, 0.4), used, strict=True)]
    inputs = [SimpleNamespace(sample=SimpleNamespace(text=None, provenance=f"line {i}")) for i in range(len(refs))]
    part = Part("gate", inputs, refs)
    v = judge_outputs("rec", metric_for("rec"), Criteria(), part, cands)
    assert v.risks == pytest.approx([frame_risk(r, c) for r, c in zip(refs, cands, strict=True)])
    assert v.risks == pytest.approx(used, abs=1e-3)
    assert v.failing == (3,)  # the one line whose string changed
    picked = at_risk("rec", part, v, 4, "at-risk")
    assert picked.name == "at-risk"
    order = [next(i for i, r in enumerate(refs) if r is x) for x in picked.references]
    assert order == [5, 1, 2, 0]  # 90%, 60%, 30%, 10%; the changed line out, the tie after them
    assert (picked.pool, picked.pool_off) == (6, 1)  # stands for the part, its changed line off already
    assert picked.slice("at-risk", 0, 2).pool == 6 and picked.pick("x", [0]).pool_off == 1
    assert [next(i for i, r in enumerate(refs) if r is x) for x in at_risk("rec", part, v, 9, "a").references] \
        == [5, 1, 2, 0, 4]
    with pytest.raises(ValueError):
        at_risk("rec", part.slice("gate", 0, 3), v, 2, "a")


def test_the_search_keeps_time_for_the_checks_after_it() -> None:
    """The refinement's budget ends early by what the checks after it should cost at the wall time per sample
    measured so far: the confirmation and gate (with one mend) on the search target, the verification (and the random check)
    on the target — as the winograd check measured it, else EMULATION_FACTOR times the search target's."""
    from types import SimpleNamespace

    from ncnnpass.passes.precision.target_repair import EMULATION_FACTOR, checks_cost

    lavapipe = SimpleNamespace(seconds=16.0, inferences=32)  # 0.5 s per line
    emulator = SimpleNamespace(seconds=240.0, inferences=16)  # 15 s per line
    assert checks_cost(lavapipe, emulator, 224, 8, True) == pytest.approx(0.5 * 224 + 15 * 9)
    fresh = SimpleNamespace(seconds=0.0, inferences=0)  # the target not run yet
    assert checks_cost(lavapipe, fresh, 224, 8, False) == pytest.approx(0.5 * 224 + EMULATION_FACTOR * 0.5 * 8)
    assert checks_cost(lavapipe, None, 224, 0, True) == pytest.approx(0.5 * 225)  # the target is the search's
    # a gate of 200 lines is foreseen with one mend: judged again on its other lines
    assert checks_cost(lavapipe, emulator, 24, 8, False, gate=200) == pytest.approx(0.5 * (24 + 400) + 15 * 8)
    # ... and then on as many fresh lines
    assert checks_cost(lavapipe, emulator, 24, 8, False, gate=200, fresh=200) == pytest.approx(
        0.5 * (24 + 600) + 15 * 8)
    whole = Budget(600.0)
    search_part = whole.less(300.0)
    assert whole.left() - search_part.left() == pytest.approx(300.0, abs=0.1)
    assert Budget(None).less(300.0).left() == float("inf") and whole.less(-5).deadline == whole.deadline
    # a callable reserve is asked again at each look; reserves add up
    cost = [100.0]
    moving = whole.less(lambda: cost[0])
    first = moving.left()
    cost[0] = 400.0
    assert first - moving.left() == pytest.approx(300.0, abs=0.1)
    assert whole.left() - moving.less(50.0).left() == pytest.approx(450.0, abs=0.1)


def test_a_refined_choice_that_misses_steps_back_to_its_walk_point_first(chain) -> None:
    """The refinement lowered a group on top of walk point j and the gate sees that group's harm: the step back
    tries walk point j itself first (it was never judged there) and keeps it, rather than bisecting below it."""
    from ncnnpass.passes.precision.checks import pass_gate

    _, macs = chain
    res, s = _proxy_search(chain)
    extra = next(g for g in s.walk[s.j:] if g.macs and all(res.chosen.choice(n) != FP16 for n in g.layers))
    refined = s.at(s.j, [extra])
    assert fp16_share(macs, refined) > fp16_share(macs, s.at(s.j))

    class Gated(FakeEvaluator):
        target = "vulkan"

        def evaluate(self, placements, part="calibration", count=None):
            out = super().evaluate(placements, part, count)
            if part == "gate":  # the extra group's harm shows on the gate only
                out = [Verdict(False, 9.0, {}, ["off"], 200) if any(p.choice(n) == FP16 for n in extra.layers)
                       else v for p, v in zip(placements, out, strict=True)]
            return out

    j = s.j
    ev = Gated({"c4": 2.0, "sm": 5.0})
    chosen, _, gated = pass_gate(ev, s, refined, res.chosen_verdict, Budget(None), [], print, mendable=False)
    assert gated.ok and chosen == s.at(j) and s.j == j


def _rec_lines(n: int):
    """``n`` lines of 4 frames x 3 classes reading "ab" at confidence 0.9, as a calibration part."""
    from ncnnpass.passes.measure.model_input import ModelInput
    from ncnnpass.passes.measure.samples import Provenance, Sample
    from ncnnpass.passes.precision.evaluator import Part

    frames = np.full((4, 3), 0.05, np.float32)
    frames[np.arange(4), [1, 0, 2, 0]] = 0.9
    inputs = [ModelInput(Sample(Provenance("builtin-lines", "t", seed=0, index=i, key=str(i))),
                         np.zeros((1, 3, 8, 8), np.float32), (8, 8)) for i in range(n)]
    return Part("calibration", inputs, [frames.copy() for _ in range(n)])


def test_the_checks_after_the_search_judge_calibration_lines_as_held_out_from_one_run(chain, monkeypatch) -> None:
    """A mend is not chosen on the calibration lines: what it must still pass judges them as held-out lines
    (32 lines allow 1 beyond the confidence tolerance; per line, 1 fails), from the same run as the search's
    per-line verdict; strings still count per line."""
    from types import SimpleNamespace

    from ncnnpass.passes.precision import evaluator as E
    from ncnnpass.passes.precision.checks import mended_calibration, unchosen

    g, _ = chain
    cal = _rec_lines(32)
    runs: list[int] = []

    def outputs(graphs, inputs, pool):  # candidate k moves the confidence of lines 5 (and 9); the third a string
        got = []
        for k, _graph in enumerate(graphs):
            outs = [r.copy() for r in cal.references]
            for i in ([5], [5, 9], [5])[k]:
                outs[i][0] = [0.05, 0.87, 0.08]  # confidence 0.9 -> 0.8925 (beyond 5e-3)
            if k == 2:
                outs[9][2] = [0.05, 0.9, 0.05]  # "aa" for "ab"
            runs.append(len(inputs))
            got.append((outs, None))
        return got

    monkeypatch.setattr(E, "candidate_outputs", outputs)
    ev = E.Evaluator(g, "rec", {"calibration": cal}, SimpleNamespace(name="x86", workers=1))
    one, two, string = (Placement(((c, FP32),)) for c in ("c1", "c2", "c3"))
    assert unchosen(ev, ["calibration", "confirm", "held:calibration"]) == ["held:calibration", "confirm",
                                                                             "held:calibration"]
    strict = ev.evaluate([one, two, string])
    assert [v.ok for v in strict] == [False, False, False] and runs == [32, 32, 32]
    assert "confidence changes by" in strict[0].reasons[0]
    held = ev.evaluate([one, two, string], "held:calibration")
    assert runs == [32, 32, 32], "the view is judged from the calibration's run"
    assert [v.ok for v in held] == [True, False, False]
    assert held[0].numbers["conf_beyond"] == 1 and held[0].numbers["conf_beyond_allowed"] == 1
    assert held[1].numbers["conf_beyond"] == 2 and "1 of 32 strings change" in held[2].reasons[0]
    assert mended_calibration(ev, one) is held[0]
    assert unchosen(FakeEvaluator({}), ["calibration"]) == ["calibration"]  # no views: judged as they are
