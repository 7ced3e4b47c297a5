"""The mixed-precision search's logic with a fake evaluator (fast), the placement forms, the verdicts and the
Pareto output. The real searches on the emulated phone and on lavapipe are in tests/test_target_repair.py."""

from __future__ import annotations

import json

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
