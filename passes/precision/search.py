"""Find a small set of layers to keep out of fp16 so that the target's error is within a tolerance.

Polygraphy's ``debug precision`` idea, specialised for ncnn's featmask: order the layers by sensitivity
(:func:`ncnnpass.passes.precision.sensitivity.ranking`), then search the shortest prefix of that order
whose masking brings the verified error within the tolerance. Each probe is one run of the whole net
on the target (the placement made ARM-safe first); ``workers`` probes run in parallel per round, so a
round splits the interval into ``workers + 1`` parts (bisection with one worker).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.featmask import KEEP_FP32_BITS, make_featmask_safe  # 31=23: right on x86, ARM and Vulkan
from ncnnpass.ir.runtime import Job, TargetPool
from ncnnpass.passes.measure.tolerance import max_abs_error


def abs_error(outs: Sequence[Mapping[str, np.ndarray]], refs: Sequence[Sequence[np.ndarray]],
              names: Sequence[str]) -> float:
    """max |out − ref| over samples and outputs; inf on NaN/Inf or a size mismatch."""
    pairs = [(r, out[name]) for out, ref in zip(outs, refs, strict=True) for name, r in zip(names, ref, strict=True)]
    return max_abs_error([r for r, _ in pairs], [g for _, g in pairs])


def with_fp32_layers(graph: Graph, names: Sequence[str] | set[str], bits: int = KEEP_FP32_BITS) -> Graph:
    """A copy of ``graph`` with ``names`` masked and the placement made ARM-safe."""
    g = graph.copy()
    for n in names:
        ly = g.layer(n)
        ly.featmask = ly.featmask | bits
    make_featmask_safe(g)
    return g


@dataclass
class Probe:
    k: int
    error: float
    failure: str | None = None


def evaluate(graph: Graph, names_list: Sequence[Sequence[str]], samples: Sequence[Mapping[str, np.ndarray]],
             refs: Sequence[Sequence[np.ndarray]], pool: TargetPool,
             progress: Callable[[str], None] | None = None) -> list[tuple[float, str | None]]:
    """(max abs error, failure) of each placement in ``names_list``, run in parallel on ``pool``."""
    outs = list(graph.outputs)
    jobs = [Job(with_fp32_layers(graph, names), samples, outs) for names in names_list]
    results = pool.run(jobs, progress)
    return [(abs_error(r.outputs, refs, outs), None) if r.ok else (float("inf"), str(r.error)) for r in results]


def cut_points(order: Sequence[str], macs: Mapping[str, int]) -> list[int]:
    """Prefix lengths worth trying: those followed by a layer with MACs (a prefix may as well take every
    MAC-free layer after it: same fp16 MAC share, fewer fp16 blobs), plus 0 and the full length."""
    return sorted({0, len(order), *(k for k in range(1, len(order)) if macs.get(order[k], 0) > 0)})


def shortest_prefix(graph: Graph, order: Sequence[str], tolerance: float,
                    samples: Sequence[Mapping[str, np.ndarray]], refs: Sequence[Sequence[np.ndarray]],
                    pool: TargetPool, lo: int = 0, hi: int | None = None, cuts: Sequence[int] | None = None,
                    progress: Callable[[str], None] | None = None) -> tuple[int, list[Probe]]:
    """Smallest k in (lo, hi] (from ``cuts``, default every length) with error(order[:k]) <= tolerance,
    assuming prefix k=lo fails and the error shrinks as k grows. Returns (k, probes); k = hi when nothing
    smaller passed (hi itself is not run)."""
    hi = len(order) if hi is None else hi
    points = sorted({k for k in (cuts if cuts is not None else range(len(order) + 1)) if lo <= k <= hi} | {lo, hi})
    a, b = 0, len(points) - 1  # indices into points: points[a] fails, points[b] passes (assumed)
    probes: list[Probe] = []
    while b - a > 1:
        n = min(pool.workers, b - a - 1)
        idx = sorted({a + (b - a) * (j + 1) // (n + 1) for j in range(n)} - {a, b})
        ks = [points[i] for i in idx]
        errs = evaluate(graph, [order[:k] for k in ks], samples, refs, pool, progress)
        for k, (e, fail) in zip(ks, errs, strict=True):
            probes.append(Probe(k, e, fail))
            if progress:
                progress(f"  {k} layers kept fp32: max error {e:.3g}{' (' + fail + ')' if fail else ''}")
        passing = [i for i, (e, _) in zip(idx, errs, strict=True) if e <= tolerance]
        failing = [i for i, (e, _) in zip(idx, errs, strict=True) if e > tolerance]
        if passing:
            b = min(passing)
        below = [i for i in failing if i < b]
        if below:
            a = max(below)
    return points[b], probes
