"""Screening proxies for the ARM search: cheaper places that rank placements as the emulated phone does.

- ``vulkan``: lavapipe with default options, the placement in its every-path form (docs/gpu.md: fp16 storage
  *and* arithmetic, an fp16 Softmax; ranks the PP-OCRv3 placements like the emulated A76, Spearman 0.94);
- ``x86-cast``: x86 ncnn with every blob an fp16-storing layer hands on rounded to fp16 by a ``Cast`` pair
  (:func:`fp16_rounded`): fp16 storage only, no fp16 arithmetic (0.1 s per line instead of ~1).

Which of them holds per model is measured by ``tests/benchmarks/bench_target_repair.py rank``.
"""

from __future__ import annotations

from ncnnpass.ir import Graph
from ncnnpass.ir.featmask import is_masked

#: the proxies a search may run on, and the runtime target each uses
PROXY_TARGETS = {"vulkan": "vulkan", "x86-cast": "isolated"}


def fp16_rounded(graph: Graph) -> Graph:
    """``graph`` (edited in place and returned) with a Cast fp32->fp16->fp32 pair on every blob that an
    unmasked layer (or the net input) hands to a reader that stores fp16 on ARM; masked layers' outputs and
    their fp32 readers are left alone."""
    g = graph
    for blob in list(g.blobs):
        b = g.blobs[blob]
        prod = b.producer
        if prod is not None and prod.type != "Input" and is_masked(prod):
            continue
        readers = [c for c in dict.fromkeys(b.consumers) if not is_masked(c) or c.type == "Dropout"]
        if not readers:
            continue
        half, back = g.unique_blob_name(f"{blob}_h"), g.unique_blob_name(f"{blob}_r")
        c1 = g.add_layer("Cast", g.unique_layer_name(f"{blob}_to_h"), [blob], [half], {0: 1, 1: 2}, after=prod)
        g.add_layer("Cast", g.unique_layer_name(f"{blob}_from_h"), [half], [back], {0: 2, 1: 1}, after=c1)
        for c in readers:
            c.inputs = [back if n == blob else n for n in c.inputs]
    return g
