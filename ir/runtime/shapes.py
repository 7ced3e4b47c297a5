"""Input shapes given by a user, normalised in one place (``apply_passes``, ``verify``, ``ncnnpass run``).

A shape is numpy order (``(c, h, w)``). Users give one tuple for a one-input model, a ``{blob: shape}``
mapping, ``None`` (use the sizes the ``Input`` layers declare), or on the command line ``C,H,W`` /
``BLOB:C,H,W`` strings. Blob shapes inside a run are then inferred lazily by :class:`~.context.PassContext`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError

Shapes = dict[str, tuple[int, ...]]


def declared_input_shapes(graph: Graph) -> Shapes | None:
    """Input shapes declared by ``Input`` layer params (``0=w 1=h 2=c``), if every input has one."""
    out: Shapes = {}
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


def normalize_input_shapes(graph: Graph, shape: Any, *, required: bool = False) -> Shapes | None:
    """``{input blob: shape}`` from what a user gave.

    ``required=False`` (passes): ``None`` stays ``None`` (the run falls back to declared sizes, else
    shape-dependent rules do not fire). ``required=True`` (running the model): ``None`` means the
    declared sizes, and every input needs a shape.
    """
    ins = graph.inputs
    if shape is None:
        if not required:
            return None
        declared = declared_input_shapes(graph)
        if declared is None:
            raise NcnnpassError(f"the model's inputs {ins} declare no size: give a shape such as 3,48,320")
        return declared
    if isinstance(shape, Mapping):
        if required:
            missing = [n for n in ins if n not in shape]
            if missing:
                raise NcnnpassError(f"no shape given for input(s) {', '.join(missing)}")
        unknown = [str(k) for k in shape if k not in graph.blobs]
        if unknown:
            raise NcnnpassError(f"a shape is given for {', '.join(unknown)}, which the model has no blob of "
                                f"(its inputs: {', '.join(ins)})")
        return {k: _dims(v) for k, v in shape.items()}
    if len(ins) != 1:
        raise NcnnpassError(f"the model has inputs {ins}: give one shape per input ({{blob: shape}})")
    return {ins[0]: _dims(shape)}


def _dims(shape: Any) -> tuple[int, ...]:
    """A user's shape as positive ints (numpy order)."""
    try:
        dims = tuple(int(x) for x in shape)
        exact = all(int(x) == x for x in shape)
    except (TypeError, ValueError):
        raise NcnnpassError(f"bad shape {shape!r}: expected a sequence of positive integers such as (3, 48, 320)") from None
    if not dims or not exact or any(d <= 0 for d in dims):
        raise NcnnpassError(f"bad shape {shape!r}: dimensions must be positive integers")
    return dims


def parse_shape(text: str) -> tuple[int, ...]:
    """``"3,48,320"`` (or ``"3x48x320"``) -> ``(3, 48, 320)``."""
    try:
        dims = tuple(int(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        raise NcnnpassError(f"bad shape {text!r}: expected comma-separated integers such as 3,48,320") from None
    if not dims or any(d <= 0 for d in dims):
        raise NcnnpassError(f"bad shape {text!r}: dimensions must be positive")
    return dims


def shapes_from_cli(values: Sequence[str] | None) -> tuple[int, ...] | Shapes | None:
    """Repeated ``--shape [BLOB:]C,H,W`` options -> one shape, ``{blob: shape}`` or ``None``."""
    if not values:
        return None
    named = [v for v in values if ":" in v]
    if not named and len(values) == 1:
        return parse_shape(values[0])
    if len(named) != len(values):
        raise NcnnpassError("with several --shape options, name each input: --shape in0:3,48,320")
    return {v.split(":", 1)[0]: parse_shape(v.split(":", 1)[1]) for v in values}
