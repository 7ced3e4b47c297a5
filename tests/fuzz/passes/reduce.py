"""Delta debugging of a failing case: the shortest pass sequence and the smallest graph that still fail alike.

``still_fails(case)`` runs a candidate (in a worker: a crash must be reproducible too) and says whether it
fails with the same signature. The sequence is reduced first (pipelines expanded into their passes, then
ddmin over the list, then the run settings), then the graph by edits that keep it valid for ncnn:

* keep one protected output (and what it needs);
* cut at a blob: its producer side becomes an ``Input`` declaring the blob's shape (known from ncnn's
  shape inference on the unmodified, runnable model);
* bypass a layer whose output has the shape of its first input (consumers read that input).

Rounds repeat until no edit helps (1-minimal for these edits), within ``max_trials``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace

from ncnnpass.ir import Graph, runtime
from ncnnpass.passes.pipelines import PIPELINES

from .oracle import Case, Outcome, load

StillFails = Callable[[Case], bool]


def signature(o: Outcome) -> tuple[str, str, str, str]:
    """What must stay the same while reducing: status, stage, kind, and the message without names/numbers."""
    msg = re.sub(r"'[^']*'|\"[^\"]*\"|[-+]?\d[\d.e+-]*", "_", o.message)
    if o.kind == "invariant":  # which promise broke, not the details
        msg = msg.split(":")[0]
    return o.status, o.stage, o.kind, msg if o.kind not in ("numeric", "crash", "hang") else ""


class Reducer:
    def __init__(self, still_fails: StillFails, max_trials: int = 400) -> None:
        self.still_fails = still_fails
        self.max_trials = max_trials
        self.trials = 0

    def _try(self, case: Case) -> bool:
        if self.trials >= self.max_trials:
            return False
        self.trials += 1
        return self.still_fails(case)

    def reduce(self, case: Case) -> Case:
        case = replace(case, passes=expand(case.passes))
        for _ in range(3):
            before = (len(case.passes), len(case.param))
            case = self.passes(case)
            case = self.settings(case)
            case = self.graph(case)
            if (len(case.passes), len(case.param)) == before:
                break
        return case

    # -- the sequence ----------------------------------------------------------------------------
    def passes(self, case: Case) -> Case:
        items = list(case.passes)
        n = 2
        while len(items) >= 2 and self.trials < self.max_trials:
            chunk = max(1, len(items) // n)
            reduced = False
            for start in range(0, len(items), chunk):
                rest = items[:start] + items[start + chunk:]
                if rest and self._try(replace(case, passes=rest)):
                    items, n, reduced = rest, max(n - 1, 2), True
                    break
            if not reduced:
                if chunk == 1:
                    break
                n = min(len(items), n * 2)
        return replace(case, passes=items)

    def settings(self, case: Case) -> Case:
        if case.fold_storage != "fp32" and self._try(replace(case, fold_storage="fp32")):
            case = replace(case, fold_storage="fp32")
        if case.outputs and self._try(replace(case, outputs=None)):
            case = replace(case, outputs=None)
        return case

    # -- the graph -------------------------------------------------------------------------------
    def graph(self, case: Case) -> Case:
        improved = True
        while improved and self.trials < self.max_trials:
            improved = False
            for cand in candidates(case):
                if self._try(cand):
                    case, improved = cand, True
                    break
        return case


def expand(items: list[str]) -> list[str]:
    out: list[str] = []
    for it in items:
        out += list(PIPELINES[it].passes) if it in PIPELINES else [it]
    return out


def _with_graph(case: Case, g: Graph, run_shapes: dict[str, list[int]]) -> Case:
    outputs = list(g.outputs)
    return replace(case, param=g.to_param_text(), bin=g.to_bin_bytes(), run_shapes=run_shapes,
                   pass_shapes=None if case.pass_shapes is None else dict(run_shapes), outputs=outputs)


def _finish(g: Graph, shapes: dict[str, tuple[int, ...]], keep: set[str]) -> dict[str, list[int]] | None:
    """Drop what no output needs, unused Inputs too; the run shapes of the Inputs left (None: nothing left).
    Layers that reach a blob of ``keep`` (the unread, unprotected results of the graph before the edit)
    stay: a rewrite of such a dead-end may be what fails."""
    protected = list(g.outputs)
    g.outputs = protected + [b for b in sorted(keep) if b in g.blobs and not g.blobs[b].consumers
                             and g.blobs[b].producer is not None and b not in protected]
    g.cleanup()
    g.outputs = [o for o in protected if o in g.blobs]
    for ly in g.find("Input"):
        if not any(g.blobs[o].consumers or o in g.outputs for o in ly.outputs):
            g.remove(ly, reconnect=False)
    if len(g.layers) < 2 or not g.outputs:
        return None
    return {b: list(shapes[b]) for ly in g.find("Input") for b in ly.outputs}


def _input_params(shape: tuple[int, ...]) -> dict[int, int]:
    return dict(zip((0, 1, 2), reversed(shape), strict=False)) if len(shape) <= 3 else {}


def candidates(case: Case) -> Iterator[Case]:
    """Smaller valid variants of the case's graph, the biggest cuts first."""
    g0 = load(case)
    shapes = runtime.infer_shapes(g0.copy(), {k: tuple(v) for k, v in case.run_shapes.items()})
    outputs = list(g0.outputs)
    keep = set(g0.dangling_blobs()) - set(outputs)
    if keep:  # drop the unprotected dead ends
        g = load(case)
        rs = _finish(g, shapes, set())
        if rs is not None and len(g.layers) < len(g0.layers):
            yield _with_graph(case, g, rs)
    if len(outputs) > 1:
        for o in outputs:
            g = load(case)
            g.outputs = [o]
            rs = _finish(g, shapes, keep)
            if rs is not None:
                yield _with_graph(case, g, rs)
    order = g0.topo_order()
    for ly in reversed(order):  # cut at a layer's outputs: it and everything before that only it needs go
        if ly.type == "Input" or any(o not in shapes or len(shapes[o]) > 3 for o in ly.outputs):
            continue
        g = load(case)
        target = g.layer(ly.name) if len(g.find(name=ly.name)) == 1 else None
        if target is None or target.outputs != ly.outputs:
            continue
        outs = list(target.outputs)
        g.remove(target, reconnect=False)
        for k, o in enumerate(outs):
            g.add_layer("Input", name=g.unique_layer_name(f"cut{k}"), outputs=[o], params=_input_params(shapes[o]),
                        index=0)
        rs = _finish(g, shapes, keep)
        if rs is not None and len(g.layers) < len(g0.layers):
            yield _with_graph(case, g, rs)
    for ly in reversed(order):  # bypass one layer: its readers (or the protected output) take its input
        if ly.type == "Input" or len(ly.outputs) != 1 or not ly.inputs:
            continue
        src, dst = ly.inputs[0], ly.outputs[0]
        if shapes.get(src) != shapes.get(dst) and g0.blobs[dst].consumers:
            continue
        g = load(case)
        target = g.find(name=ly.name)
        if len(target) != 1:
            continue
        g.replace_all_uses(dst, src)
        g.outputs = list(dict.fromkeys(src if n == dst else n for n in g.outputs))
        g.remove(target[0], reconnect=False)
        rs = _finish(g, shapes, keep)
        if rs is not None:
            yield _with_graph(case, g, rs)
