"""What a pass sees besides the graph: shapes, options, weight policy and a tracer of skip reasons."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError


class PassContext:
    """Per-run state shared by the passes of one :func:`apply_passes` call.

    ``input_shapes`` maps input blob names to numpy-order shapes (``(c, h, w)``). When given (or when
    every ``Input`` layer declares its size), passes that need blob shapes get them from ncnn itself
    (:func:`ncnnpass.ir.runtime.infer_shapes`), refreshed between passes when the graph changed.
    """

    def __init__(self, graph: Graph, input_shapes: dict[str, tuple[int, ...]] | None = None,
                 fold_storage: str = "fp32") -> None:
        self.graph = graph
        self.input_shapes = input_shapes if input_shapes is not None else declared_input_shapes(graph)
        self.fold_storage = fold_storage
        self.options: dict[str, Any] = {}
        self.reasons: dict[str, Counter] = defaultdict(Counter)
        self.order: dict = {}
        self.protected: set[str] = set(graph.outputs)
        self.shape_error: str | None = None
        self.generation = 0                 # bumped by the pass manager whenever a pass changed the graph
        self._shapes_at: int | None = None
        self._split_tops: set[str] | None = None
        self.weights_loaded = graph.source[1] is not None or any(ly.weights for ly in graph.layers)

    # -- shapes ------------------------------------------------------------------------------------
    @property
    def has_shapes(self) -> bool:
        return self.input_shapes is not None and self.shape_error is None

    def refresh_shapes(self) -> None:
        """Infer every blob's shape with ncnn if the graph changed since the last inference."""
        if self.input_shapes is None or self._shapes_at == self.generation:
            return
        from ncnnpass.ir.runtime import infer_shapes

        for b in self.graph.blobs.values():
            b.shape = None
        try:
            infer_shapes(self.graph, self.input_shapes)
            self.shape_error = None
        except NcnnpassError as exc:
            self.shape_error = f"shape inference failed: {exc}"
        self._shapes_at = self.generation

    def shape(self, blob: str) -> tuple[int, ...] | None:
        b = self.graph.blobs.get(blob)
        return None if b is None else b.shape

    # -- naming ------------------------------------------------------------------------------------
    def split_tops(self) -> set[str]:
        """Names the writer reserves for regenerated Split outputs (computed once per run)."""
        if self._split_tops is None:
            self._split_tops = {t for rec in self.graph.splits.values() for t in rec.top_names}
        return self._split_tops

    def new_blob_name(self, prefix: str, taken: set[str]) -> str:
        blobs, tops = self.graph.blobs, self.split_tops()
        cand, k = prefix, 0
        while cand in blobs or cand in tops or cand in taken:
            k += 1
            cand = f"{prefix}_{k}"
        taken.add(cand)
        return cand

    def skip(self, rule: str, reason: str) -> None:
        self.reasons[rule][reason] += 1


def declared_input_shapes(graph: Graph) -> dict[str, tuple[int, ...]] | None:
    """Input shapes declared by ``Input`` layer params (``0=w 1=h 2=c``), if every input has one."""
    out: dict[str, tuple[int, ...]] = {}
    inputs = graph.find("Input")
    if not inputs:
        return None
    for ly in inputs:
        w, h, c = (int(ly.params.get(k, 0)) for k in (0, 1, 2))
        d = int(ly.params.get(11, 0))
        if w <= 0:
            return None
        shape = (w,) if h <= 0 else ((h, w) if c <= 0 else ((c, d, h, w) if d > 0 else (c, h, w)))
        for name in ly.outputs:
            out[name] = shape
    return out
