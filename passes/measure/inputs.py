"""The one generator of seeded random model inputs.

Uniform in [-1, 1] (a PaddleOCR input is normalised to that range), float32, one array per input blob,
from ``numpy.random.default_rng(seed)`` in the order of ``shapes``. Random inputs find bugs; they do not
measure fidelity (real or rendered text does: :mod:`ncnnpass.passes.measure` data loaders).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.runtime import check_input_shapes
from ncnnpass.ir.runtime.shapes import normalize_input_shapes

__all__ = ["seeded_inputs", "seeded_array", "random_feeds"]

LOW, HIGH = -1.0, 1.0


def seeded_inputs(shapes: Mapping[str, Sequence[int]], seed: int = 0) -> dict[str, np.ndarray]:
    """``{blob: uniform [-1, 1] float32 array of its shape}``; the sizes are checked before allocating."""
    shapes = {k: tuple(int(d) for d in v) for k, v in shapes.items()}
    check_input_shapes(shapes)
    rng = np.random.default_rng(seed)
    return {k: rng.uniform(LOW, HIGH, v).astype(np.float32) for k, v in shapes.items()}


def seeded_array(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """One array of :func:`seeded_inputs` (e.g. an ONNX input with its batch dim)."""
    return seeded_inputs({"x": shape}, seed)["x"]


def random_feeds(graph: Graph, shape=None, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs for ``graph``: ``shape`` as :func:`normalize_input_shapes` takes it (None = declared)."""
    return seeded_inputs(normalize_input_shapes(graph, shape, required=True), seed)
