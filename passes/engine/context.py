"""What a pass sees besides the graph: shapes, options, weight policy and a tracer of skip reasons."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ncnnpass.ir import Graph, Layer
from ncnnpass.ir.errors import NcnnpassError
from ncnnpass.ir.runtime.shapes import declared_input_shapes

if TYPE_CHECKING:
    from .rewriter import Rewriter


class PassContext:
    """Per-run state shared by the passes of one :func:`apply_passes` call.

    ``input_shapes`` maps input blob names to numpy-order shapes (``(c, h, w)``). When given (or when
    every ``Input`` layer declares its size), blob shapes come from ncnn itself
    (:func:`ncnnpass.ir.runtime.infer_shapes`), inferred lazily: the rewriter invalidates the shapes
    of the blobs it creates, and a rule that asks for a shape the graph has outdated gets fresh shapes
    (right away between rewrite batches, at the end of the batch inside one, then its rules run again).
    """

    def __init__(self, graph: Graph, input_shapes: dict[str, tuple[int, ...]] | None = None,
                 fold_storage: str = "fp32") -> None:
        self.graph = graph
        self.input_shapes = input_shapes if input_shapes is not None else declared_input_shapes(graph)
        self.fold_storage = fold_storage
        self.options: dict[str, Any] = {}
        self.reasons: dict[str, Counter] = defaultdict(Counter)
        self.protected: set[str] = set(graph.outputs)
        self.shape_error: str | None = None
        self.generation = 0                 # bumped whenever the graph changed (rewriter, pass manager)
        self.rewriter: Rewriter | None = None  # the rewriter of the batch in flight, if any
        self.stale_shape_asked = False      # a rule asked for a shape the graph has outdated, mid-batch
        self._shapes_at: int | None = None
        self.weights_loaded = graph.source[1] is not None or any(ly.weights for ly in graph.layers)
        self.notes: list[str] = []  # the running pass's notes (the pass manager points it at the pass's stat)
        self.progress: Callable[[str], None] | None = None  # where long passes report progress

    def note(self, text: str) -> None:
        """Add a line to the running pass's part of the report."""
        self.notes.append(text)

    def say(self, text: str) -> None:
        """A progress line (long passes: measurements on a target), if anyone listens."""
        if self.progress is not None:
            self.progress(text)

    def graph_changed(self) -> None:
        """Record that the graph changed: shapes inferred before are outdated for new blobs."""
        self.generation += 1

    # -- shapes ------------------------------------------------------------------------------------
    @property
    def has_shapes(self) -> bool:
        return self.input_shapes is not None and self.shape_error is None

    @property
    def shapes_outdated(self) -> bool:
        return self.input_shapes is not None and self._shapes_at != self.generation

    def refresh_shapes(self) -> bool:
        """Infer every blob's shape with ncnn if the graph changed since the last inference (True if it ran)."""
        if not self.shapes_outdated:
            return False
        from ncnnpass.ir.runtime import infer_shapes

        for b in self.graph.blobs.values():
            b.shape = None
        try:
            infer_shapes(self.graph, self.input_shapes)
            self.shape_error = None
        except NcnnpassError as exc:
            self.shape_error = f"shape inference failed: {exc}"
        self._shapes_at = self.generation
        return True

    def shape(self, blob: str) -> tuple[int, ...] | None:
        """The shape of ``blob`` (numpy order), ``None`` when unknown."""
        b = self.graph.blobs.get(blob)
        if b is None:
            return None
        if b.shape is None and self.shapes_outdated:
            if self.rewriter is None:
                self.refresh_shapes()
            else:  # the graph is mid-batch (not runnable): the driver refreshes after the batch
                self.stale_shape_asked = True
        return b.shape

    # -- positions and names -----------------------------------------------------------------------
    def position(self, layer: Layer) -> float:
        """Where ``layer`` stands in the graph (the rewriter's view while a batch is in flight)."""
        if self.rewriter is not None:
            return self.rewriter.position(layer)
        return float(self.graph.position(layer)) if layer.graph is self.graph else -1.0

    def new_blob_name(self, prefix: str, taken: set[str]) -> str:
        """A fresh blob name (see :meth:`.rewriter.Rewriter.fresh_blob_name`)."""
        from .rewriter import Rewriter

        return (self.rewriter or Rewriter(self)).fresh_blob_name(prefix, taken)

    def skip(self, rule: str, reason: str) -> None:
        self.reasons[rule][reason] += 1
