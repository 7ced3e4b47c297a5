"""Rewrite passes over the ncnn IR and the ONNX/Paddle side, and the tools built on them.

Two kinds of subpackage:

- **rewrite passes**: ``engine/`` (pattern language, matcher, pass manager), ``ncnn/`` (one ncnn pass
  per file) and ``onnx/`` (passes that edit ONNX graphs before conversion);
- **the measurement core** below them: ``measure/`` (runners, seeded inputs, the tolerance, verification,
  model facts, data and task decoding);
- **precision** beside the passes: ``precision/`` (the mixed-precision search behind ``repair-for-target``);
- **tools built on them**: ``compare/`` (ONNX vs ncnn layer-by-layer forensics), ``toolchain/`` (paddle2onnx,
  onnxsim, pnnx and the whole conversion) and ``paddle/`` (PaddleOCR-side tools: configs, centers).

>>> from ncnnpass.passes import apply_passes, list_passes, PIPELINES
>>> report = apply_passes(graph, "repair")            # a pipeline name, or pass names/specs
>>> report = apply_passes(graph, ["gap-fc-to-conv", "keep-fp32[types=InnerProduct]"])
>>> print(report); report.changed; report["gap-fc-to-conv"]

The ncnn passes are imported lazily so the ONNX/Paddle/toolchain subpackages stay light.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ncnnpass.ir import Graph

    from .engine import Pass, PassReport

__all__ = ["PIPELINES", "apply_passes", "list_passes", "resolve_passes"]


def resolve_passes(names: str | list[str | Pass] | tuple[str | Pass, ...]) -> list[Pass]:
    """Pass objects for a pipeline name, a comma-separated spec string, or a list of names/specs/passes
    (pipeline names inside a list expand in place). Every spec is parsed (names, option names and values)
    before this returns, so a bad one fails before any pass runs."""
    from ncnnpass.ir.errors import NcnnpassError

    from .engine import Pass
    from .pipelines import PIPELINES
    from .registry import get_pass, split_specs

    if isinstance(names, str):
        items: list[Any] = split_specs(names)
    elif isinstance(names, (list, tuple)):
        items = list(names)
    else:
        raise NcnnpassError(f"passes must be a pipeline name, a spec string or a list, not {type(names).__name__}")
    out: list[Pass] = []
    for item in items:
        if isinstance(item, Pass):
            out.append(item)
        elif not isinstance(item, str):
            raise NcnnpassError(f"a pass must be given as a name, a spec or a Pass, not {item!r}")
        elif item in PIPELINES:
            out.extend(get_pass(s) for s in PIPELINES[item].passes)
        else:
            out.append(get_pass(item))
    if not out:
        raise NcnnpassError(f"no passes given in {names!r}; `ncnnpass passes` lists them")
    return out


def apply_passes(graph: Graph, names: str | list[str | Pass], *, input_shape: Any = None,
                 max_iterations: int = 8, fold_storage: str = "fp32", verify_each: bool | None = None,
                 progress: Callable[[str], None] | None = None) -> PassReport:
    """Run passes (or a pipeline: ``"repair"``, ``"optimize"``) on ``graph`` in place, to a fixpoint.

    ``input_shape``: numpy-order ``(c, h, w)`` for a single-input model, or ``{input blob: shape}``;
    passes that need blob shapes get them from ncnn's own shape inference. Without it, the shapes
    ``Input`` layers declare are used, and otherwise shape-dependent rules simply do not fire.
    ``fold_storage``: ``"fp32"`` stores weights computed by folding as fp32 (exact); ``"keep"`` stores
    them back in the layer's original fp16/bf16 storage (smaller, rounds the folded values).
    ``verify_each``: run the IR verifier after every pass and name the pass that broke the graph
    (default: the ``NCNNPASS_VERIFY_EACH`` environment variable; see :mod:`ncnnpass.ir.verifier`).
    ``progress``: where passes that measure on a target (``repair-for-target``) report what they do.

    Bad input (an unknown pass or option, an option value that makes no sense, a bad shape) raises
    :class:`~ncnnpass.ir.errors.NcnnpassError` before any pass runs; the graph is then untouched.
    """
    from .engine import normalize_input_shapes, run_passes

    if fold_storage not in ("fp32", "keep"):
        from ncnnpass.ir.errors import NcnnpassError

        raise NcnnpassError(f"fold_storage must be 'fp32' or 'keep', not {fold_storage!r}")
    passes = resolve_passes(names)
    shapes = normalize_input_shapes(graph, input_shape)
    return run_passes(graph, passes, input_shapes=shapes, max_iterations=max_iterations,
                      fold_storage=fold_storage, verify_each=verify_each, progress=progress)


def list_passes() -> list[Pass]:
    """Every registered pass (``.name``, ``.doc``), in listing order."""
    from .registry import list_passes as _list

    return _list()


def __getattr__(name: str) -> Any:
    if name == "PIPELINES":
        from .pipelines import PIPELINES

        return PIPELINES
    raise AttributeError(f"module 'ncnnpass.passes' has no attribute {name!r}")
