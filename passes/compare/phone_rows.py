"""``phone_rows``: the rows ``ncnnpass convert``'s before/after table gains for the phone.

The model's outputs on an emulated ARM target (or the Vulkan GPU on lavapipe) under the phone sweep (ncnn
defaults = fp16 storage + arithmetic, fp16 storage only, fp32), each against onnxruntime on the same input; on
the GPU also the layers ncnn runs on the CPU for want of a Vulkan implementation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.ir.runtime.targets import VulkanTarget, describe_target, normalize_target, using_target
from ncnnpass.passes.measure.onnx_runner import OnnxRunner
from ncnnpass.passes.measure.tolerance import max_abs_error

from .ncnn_side import PHONE_SWEEP, PRESETS

__all__ = ["phone_rows"]


def phone_rows(graph: Graph, onnx_path: str | os.PathLike, x: np.ndarray, target: str = "arm",
               options: Sequence[str] = PHONE_SWEEP) -> dict:
    """Max |ncnn - onnxruntime| over the outputs of ``graph`` on ``target`` per option set, for input ``x``
    (``1 x C x H x W`` or ``C x H x W``). Outputs are paired by position and compared by value count.

    Returns ``{"target": "arm", "label": "arm cortex-a76 (emulated)", "rows": {"default": {"max_abs": ...,
    "seconds": ...}, "fp16-storage": {...}, "fp32": {...}}}``."""
    target = normalize_target(target)
    x = np.asarray(x, dtype=np.float32)
    batched = x if x.ndim == 4 else x[None]
    refs = OnnxRunner.cached(onnx_path, num_threads=1).run_list(batched)
    if len(refs) < len(graph.outputs):
        raise NcnnpassError(f"the ncnn model has {len(graph.outputs)} outputs, the ONNX model {len(refs)}")
    rows: dict[str, dict] = {}
    with using_target(target) as session:  # the process-wide warm worker: one start for many calls
        for name in options:
            if name not in PRESETS:
                raise NcnnpassError(f"unknown option set {name!r} (one of {', '.join(PRESETS)})")
            t0 = time.perf_counter()
            got = session.run(graph, {graph.inputs[0]: batched[0]}, list(graph.outputs), dict(PRESETS[name]), 1)
            pairs = list(zip(graph.outputs, refs, strict=False))
            for blob, ref in pairs:
                if got[blob].size != ref.size:
                    raise NcnnpassError(f"ncnn output {blob!r} has {got[blob].size} values, the ONNX output {ref.size}")
            worst = max_abs_error([r for _, r in pairs], [got[b] for b, _ in pairs])
            rows[name] = {"max_abs": worst, "seconds": time.perf_counter() - t0}
        out = {"target": target, "label": describe_target(target), "rows": rows}
        if isinstance(session, VulkanTarget):
            out["no_vulkan_implementation"] = [{"layer": n, "type": t}
                                               for n, t in session.fallback_layers(graph, dict(PRESETS[options[0]]), 1)]
    return out
