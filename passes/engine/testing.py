"""Helpers for testing passes on small models built through the IR (and compared in real ncnn).

>>> g = model('''
... Input in0 0 1 x 0=8 1=8 2=16
... Convolution conv 1 1 x t 0=16 1=1 5=1 6=256
... ReLU relu 1 1 t y
... ''')                                         # header counts are filled in
>>> fill_weights(g, seed=0)                      # random weights for every slot the params call for
>>> after = g.copy(); report = run_passes(after, [some_pass])
>>> assert_equivalent(g, after, atol=1e-5)       # both run in ncnn, fp32 options
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ncnnpass.ir import Graph, weight_slots

_POSITIVE = {("BatchNorm", "var"), ("BatchNorm", "slope")}


def model(body: str) -> Graph:
    """A graph from ``.param`` layer lines without the two header lines (counts are computed)."""
    lines = [ln.strip() for ln in body.strip().splitlines() if ln.strip() and not ln.strip().startswith("#")]
    blobs: set[str] = set()
    for ln in lines:
        tok = ln.split()
        n_in, n_out = int(tok[2]), int(tok[3])
        blobs.update(tok[4:4 + n_in + n_out])
    text = f"7767517\n{len(lines)} {len(blobs)}\n" + "\n".join(lines) + "\n"
    return Graph.from_text(text)


def fill_weights(graph: Graph, seed: int = 0, storage: str = "fp32", scale: float = 0.5) -> Graph:
    """Give every layer random weights for the slots its params call for (``storage`` for tagged slots)."""
    rng = np.random.default_rng(seed)
    for ly in graph.layers:
        ly.weights = {}
        for s in weight_slots(ly.type, ly.params, ly.name):
            if (ly.type, s.name) in _POSITIVE:
                arr = rng.uniform(0.5, 1.5, s.count)
            else:
                arr = rng.uniform(-scale, scale, s.count)
            ly.set_weight(s.name, arr.astype(np.float32), storage=storage if s.tagged else None)
    return graph


def run(graph: Graph, inputs: Mapping[str, np.ndarray], options: str = "fp32", num_threads: int = 1
        ) -> dict[str, np.ndarray]:
    """Run in ncnn (one thread by default: deterministic, and fast for small models)."""
    from ncnnpass.ir.runtime import run as _run

    return _run(graph, dict(inputs), list(graph.outputs), options=options, num_threads=num_threads)


def assert_equivalent(before: Graph, after: Graph, shape=None, *, atol: float = 1e-5, rtol: float = 1e-5,
                      options: str = "fp32", seeds: tuple[int, ...] = (0,)) -> float:
    """Run both graphs in ncnn on seeded inputs; fail if an output misses the tolerance ``atol``/``rtol``
    (:class:`ncnnpass.passes.measure.tolerance.Tolerance`: max|after − before| <= max(atol, rtol·max|ref|)).
    Returns the largest absolute difference seen."""
    from ncnnpass.passes.measure.inputs import random_feeds
    from ncnnpass.passes.measure.tolerance import Tolerance, compare_outputs

    tol = Tolerance(atol, rtol)
    worst = 0.0
    for seed in seeds:
        feeds = random_feeds(before, shape, seed)
        ref = run(before, feeds, options)
        got = run(after, feeds, options)
        cmp = compare_outputs(ref, got)
        assert cmp.within(tol), f"{cmp.describe_failure(tol)} (seed {seed})"
        worst = max(worst, cmp.max_abs)
    return worst
