"""Where fp16 hurts: per-blob drift from one all-blob run, and per-layer error in isolation.

* ``drift``: every blob of the whole net run on the target (fp16) against the same blob in the
  reference run (ncnn on this machine with fp16 off). Shows where the error accumulates and where a
  NaN/Inf first appears.
* ``local``: each layer alone on the target, fed the *reference* values of its inputs, against its
  reference output. This isolates what the layer itself adds (its input rounded to fp16 storage plus
  fp16 arithmetic), with no error inherited from upstream. All layers run in one batch of tiny nets.

Errors are relative: max |target − reference| / max |reference| (inf for NaN/Inf or a failed run).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ncnnpass.ir import Graph, Layer, runtime
from ncnnpass.ir.runtime import Job, TargetPool
from ncnnpass.passes.measure.tolerance import diff_arrays


def rel_error(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got − ref| / max |ref| (inf when ``got`` has NaN/Inf or the shapes differ)."""
    d = diff_arrays("", ref, got)
    if not d.same_shape or not d.finite:
        return float("inf")
    return d.max_abs / max(d.ref_max, 1e-12)


@dataclass
class Sensitivity:
    drift: dict[str, float]  # blob -> relative error in the whole-net target run
    local: dict[str, float]  # layer -> relative error of the layer alone, reference inputs
    first_nonfinite: str | None  # first layer (graph order) whose output is NaN/Inf in the whole-net run


def reference_blobs(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every blob of ``graph`` run natively with fp16/bf16 off."""
    return runtime.run(graph, feeds, list(graph.blobs), options="fp32", light_mode=False)


def isolated_net(layer: Layer) -> Graph:
    """A net of ``layer`` alone, with an ``Input`` per input blob (same names), weights shared."""
    g = Graph()
    for k, name in enumerate(dict.fromkeys(layer.inputs)):
        g.add_layer("Input", f"iso_in{k}", outputs=[name])
    g.add_layer(layer.type, layer.name, inputs=layer.inputs, outputs=layer.outputs, params=layer.params.copy(),
                weights=dict(layer.weights))
    return g


def _measured_layers(graph: Graph) -> list[Layer]:
    return [ly for ly in graph.layers if ly.type not in ("Input", "Split", "MemoryData") and ly.inputs]


def measure(graph: Graph, feeds: Mapping[str, np.ndarray], runner: TargetPool,
            ref: Mapping[str, np.ndarray] | None = None, options: str | Mapping[str, bool] = "default",
            progress: Callable[[str], None] | None = None) -> Sensitivity:
    """One whole-net run with every blob extracted plus one batch of isolated layers, on ``runner``."""
    ref = dict(ref) if ref is not None else reference_blobs(graph, feeds)
    layers = _measured_layers(graph)
    jobs = [Job(graph, [feeds], [b for b in graph.blobs if b in ref], options)]
    for ly in layers:
        jobs.append(Job(isolated_net(ly), [{n: ref[n] for n in dict.fromkeys(ly.inputs)}], list(ly.outputs),
                        options))
    results = runner.run(jobs, progress)
    whole = results[0]
    drift = ({b: rel_error(a, ref[b]) for b, a in whole.outputs[0].items()} if whole.ok
             else dict.fromkeys(graph.blobs, float("inf")))
    local: dict[str, float] = {}
    for ly, res in zip(layers, results[1:], strict=True):
        local[ly.name] = (max(rel_error(res.outputs[0][o], ref[o]) for o in ly.outputs) if res.ok
                          else float("inf"))
    first = next((ly.name for ly in graph.layers
                  if any(not np.isfinite(drift.get(o, 0.0)) for o in ly.outputs)), None)
    return Sensitivity(drift, local, first)


def ranking(local: Mapping[str, float], macs: Mapping[str, int], order: Sequence[str]) -> list[str]:
    """Layers to keep out of fp16 first: highest local error per unit of cost (cheap layers first at a
    tie; a layer's cost is 1 + its share of the mean MACs). Layers with no measurable error come last."""
    counted = [v for v in macs.values() if v > 0]
    mean = (sum(counted) / len(counted)) if counted else 1.0
    pos = {n: i for i, n in enumerate(order)}

    def score(name: str) -> float:
        err = local.get(name, 0.0)
        if not np.isfinite(err):
            return float("inf")
        return err / (1.0 + macs.get(name, 0) / mean)

    return sorted(local, key=lambda n: (-score(n), macs.get(n, 0), pos.get(n, 0)))
