"""What :meth:`Graph.check` reports: :class:`Problem` and the errors that make ncnn reject or misread
a graph. Reads the graph through its public API only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import schema as _schema
from .errors import WeightError

if TYPE_CHECKING:
    from .graph import Graph


@dataclass
class Problem:
    """Something :meth:`Graph.check` found."""

    kind: str
    message: str
    layer: str | None = None
    severity: str = "error"  # "error": ncnn would reject or misread it; "warning": ncnn accepts it

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}" if self.severity == "error" else f"warning: {self.kind}: {self.message}"


def _weighted_types() -> frozenset[str]:
    from .weights import WEIGHT_TABLE

    return frozenset(WEIGHT_TABLE)


def _bad_name(name: str) -> bool:
    return (len(name.encode("utf-8", "surrogateescape")) > 255 or not name
            or any(ch in " \t\n\v\f\r" for ch in name))  # ncnn's (ASCII) whitespace


def graph_errors(g: Graph) -> list[Problem]:
    """Everything that would make ncnn reject or misread ``g``, in layer order."""
    problems: list[Problem] = []
    seen: set[str] = set()
    free = g.free_inputs
    weighted = _weighted_types()
    for ly in g.layers:
        for n in ly.inputs:
            b = g.blobs[n]
            if b.producer is None:
                if n not in free:  # (one the loaded file had is an input: a warning)
                    problems.append(Problem("missing-producer", f"layer {ly.name!r} reads blob {n!r} that no layer produces", ly.name))
            elif n not in seen:
                problems.append(Problem("order", f"layer {ly.name!r} reads blob {n!r} before {b.producer.name!r} produces it", ly.name))
        seen.update(ly.outputs)
        if ly.type not in _schema.KNOWN_TYPES:
            problems.append(Problem("unknown-type", f"layer {ly.name!r} has type {ly.type!r}, not an ncnn built-in (needs a custom layer)", ly.name))
        if ly.weights or ly.type in weighted:
            try:
                ly.check_weights()
            except WeightError as exc:
                if g.source[1] is not None or ly.weights:
                    problems.append(Problem("weights", str(exc), ly.name))
        for name in (ly.name, *ly.inputs, *ly.outputs):
            if _bad_name(name):
                problems.append(Problem("name", f"name {name!r} is empty, has whitespace or is over 255 bytes", ly.name))
    for n in g.declared_outputs or []:  # (the outputs property hides the ones that are gone)
        if n not in g.blobs:
            problems.append(Problem("output", f"protected output {n!r} no longer exists"))
    return problems
