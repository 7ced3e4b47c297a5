"""Mending a choice that misses on a few samples, before stepping back along the walk.

A choice that fails on a handful of held-out samples (the gate's lines off, a line the emulated phone
changes) often fails through one small region of the network. Stepping back along the walk gives up every
group lowered after the cut, often most of the fp16 compute (PP-OCRv5 on the gate: 66.6% -> 21.9%). Mending
raises each group the choice lowered back to fp32, one at a time, on the failing samples only (a few
inferences per group), and keeps the one that brings back the most of them, the fewest MACs among equals
(MAC-free groups cost no fp16 share), that still passes what the choice passed (``pre``; raising a group moves
other samples too, the net is not monotone: the next candidates are tried); when no group brings one back,
the two that came closest together.

The failing samples were used to choose, so the ones the mend brought back leave the part: the mended choice
must pass what the choice passed before (``pre``) and the part without them — its other samples, which it was
not chosen on, and the chosen-on samples still off, which count against it (on a gate, the binomial rule over
those). Up to ``rounds`` rounds while at most ``max_samples`` samples have been used; else the caller steps back
along the walk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .criteria import Verdict
from .evaluator import Evaluator
from .placement import FP32, Placement
from .search import Group, Search

Progress = Callable[[str], None]
#: samples (over all rounds) a mend may be chosen on; more off than that is not "a few"
MAX_SAMPLES = 4
ROUNDS = 3
#: per round, the candidates (best first) tried against what the choice passed
CANDIDATES = 3


@dataclass
class Mended:
    placement: Placement
    verdict: Verdict  # on the rest of the part (the samples it was not chosen on)
    raised: list[str]  # the groups kept fp32, in the order they were raised
    used: int  # samples of the part the mend was chosen on
    back: int  # of those, the ones it brought back (they left the judged part)
    fresh: Verdict | None = None  # on samples of the same kind the mend never saw, where the caller has them

    def describe(self, share: float) -> str:
        return (f"mended by keeping {', '.join(self.raised)} fp32 ({100 * share:.1f}% fp16): {self.back} of the "
                f"{self.used} sample(s) off brought back, the other {self.verdict.samples} pass"
                + (f", and {self.fresh.samples} fresh ones" if self.fresh is not None else ""))


def lowered_groups(s: Search, placement: Placement) -> list[Group]:
    """The search's groups with a layer not fp32 in ``placement``, MAC-free ones first, then by MACs."""
    groups = [g for g in s.groups if any(placement.choice(n) != FP32 for n in g.layers)]
    return sorted(groups, key=lambda g: g.macs)


def _sub(ev: Evaluator, part: str, role: str, indices: Sequence[int]) -> str:
    """Registers samples ``indices`` of ``part`` as a part of their own (judged as ``part`` is: the name keeps
    its prefix) and returns its name."""
    name = f"{part}-{role}{len(ev.parts)}"
    ev.parts[name] = ev.parts[part].pick(name, list(indices))
    return name


def mend(s: Search, chosen: Placement, failed: Verdict, ev: Evaluator, part: str, say: Progress,
         pre: Callable[[Placement], Verdict] | None = None, max_samples: int = MAX_SAMPLES,
         rounds: int = ROUNDS) -> Mended | None:
    """``chosen`` failed on ``part`` of ``ev`` (``failed``, with its failing samples): the mended placement
    (module docstring), or None when the failing samples are too many, no group brings one back, or the mended
    placement misses ``pre`` or the part without the samples it brought back."""
    if not failed.failing or failed.error or len(failed.failing) > max_samples:
        say(f"  mend: {len(failed.failing) or 'no'} known sample(s) off"
            + (f", more than {max_samples}" if failed.failing else "") + ": stepping back along the walk")
        return None
    judged = list(range(len(ev.parts[part])))  # the samples the last verdict was on, in its order
    used: list[int] = []
    raised: list[str] = []
    current, verdict = chosen, failed
    for r in range(1, rounds + 1):
        used += [judged[i] for i in verdict.failing if judged[i] not in used]
        if verdict.error or len(used) > max_samples:
            say(f"  mend {r}: {len(used)} sample(s) off over the rounds, more than {max_samples}: stepping back")
            return None
        fix = _sub(ev, part, "mend", used)
        groups = lowered_groups(s, current)
        trials = [current.merged(dict.fromkeys(g.layers, FP32)) for g in groups]
        verdicts = ev.evaluate(trials, fix)
        tried = [(g.name, t, v) for g, t, v in zip(groups, trials, verdicts, strict=True)]
        if len(groups) > 1 and all(len(v.failing) == len(used) and not v.error for v in verdicts):
            (a, ta, _), (b, _, _) = sorted(tried, key=lambda x: x[2].score)[:2]
            pair = ta.merged(dict.fromkeys(next(g for g in groups if g.name == b).layers, FP32))
            tried += [(f"{a} + {b}", pair, ev.evaluate([pair], fix)[0])]
        good = [x for x in tried if not x[2].error and len(x[2].failing) < len(used)]
        if not good:
            say(f"  mend {r}: no group kept fp32 brings back any of the {len(used)} sample(s) off: stepping back")
            return None
        # most samples brought back first, the cheapest among equals (groups come cheapest first); the first that
        # passes what the choice passed (raising a group moves other samples too: the net is not monotone)
        ranked = sorted(good, key=lambda x: len(x[2].failing))[:CANDIDATES]
        for k, (name, trial, v) in enumerate(ranked):
            back = set(used) - {used[i] for i in v.failing}
            say(f"  mend {r}: {name} fp32 brings back {len(back)} of the {len(used)} sample(s) off "
                f"({100 * s.share(trial):.1f}% fp16)")
            p = pre(trial) if pre is not None else None
            if p is None or p.ok:
                break
            say(f"  mend {r}: misses what the choice passed: {p.headline()}")
            if k == len(ranked) - 1:
                say(f"  mend {r}: none of the {len(ranked)} best passes it: stepping back")
                return None
        raised.append(name)
        current = trial
        judged = [i for i in range(len(ev.parts[part])) if i not in back]
        (verdict,) = ev.evaluate([current], _sub(ev, part, "rest", judged))
        say(f"  mend {r}: without the {len(back)} brought back ({verdict.samples}): {verdict.headline()}")
        if verdict.ok:
            return Mended(current, verdict, raised, len(used), len(back))
    return None


__all__ = ["CANDIDATES", "MAX_SAMPLES", "Mended", "ROUNDS", "lowered_groups", "mend"]
