"""Whether an ncnn recogniser really runs at widths other than the one it was converted at.

pnnx given one input shape bakes the width into Reshape params (so do onnx2ncnn conversions of a static
ONNX), and ncnn runs such a model at another width without an error: it reads past or short of a blob.
Code that feeds text lines at their own width (the phone repair's data) asks here first: at a second
width, every Reshape must keep its input's element count.
"""

from __future__ import annotations

import math

from ncnnpass.ir import Graph, runtime
from ncnnpass.ir.errors import NcnnpassError


def other_width(width: int) -> int:
    """A second width to probe with: half of ``width`` in steps of 8 (or twice a small one)."""
    return max(8, (width // 2) // 8 * 8) if width >= 32 else width * 2


def runs_at_other_widths(graph: Graph, shape: tuple[int, int, int]) -> bool:
    """True when ``graph`` computes consistent shapes at a second width of ``shape`` (C, H, W): shape
    inference succeeds there and no Reshape changes its input's element count."""
    c, h, w = shape
    try:
        shapes = runtime.infer_shapes(graph, (c, h, other_width(w)), target="isolated")
    except NcnnpassError:
        return False
    for layer in graph.layers:
        if layer.type != "Reshape" or not layer.inputs or not layer.outputs:
            continue
        src, dst = shapes.get(layer.inputs[0]), shapes.get(layer.outputs[0])
        if src and dst and math.prod(src) != math.prod(dst):
            return False
    return True


__all__ = ["other_width", "runs_at_other_widths"]
