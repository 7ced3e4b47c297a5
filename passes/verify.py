"""Numerical verification of a rewrite: run the model before and after in ncnn on the same inputs.

>>> from ncnnpass.passes.verify import verify
>>> result = verify(before, after, (3, 48, 320))           # fp32-only ncnn options, seed 0
>>> print(result); result.ok(1e-4)
>>> verify(before, after, options="default", target="arm")  # both run on the emulated phone CPU

Inputs are seeded uniform [-1, 1]. For each protected output of ``before`` the result holds the max
absolute error and the max relative error, ``max|after - before| / max|before|`` (relative to the
output's own magnitude, so it is meaningful for near-zero elements too). The gate used by
``ncnnpass run --verify`` is :meth:`VerifyResult.ok`: every output's error, taken as absolute for outputs
of magnitude <= 1 and relative above, must not exceed the tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import VerificationError
from ncnnpass.ir.runtime.targets import Target, describe_target, normalize_target, using_target

#: Default gate for ``ncnnpass run --verify``. Exact rewrites (weight copies, pure rewiring) differ by
#: float rounding only: ~1e-6 on PP-OCR outputs; folding scales/BatchNorm into weights ~1e-6..1e-5.
DEFAULT_TOLERANCE = 1e-4


@dataclass
class OutputDiff:
    name: str
    shape_before: tuple[int, ...]
    shape_after: tuple[int, ...] | None
    max_abs: float
    max_rel: float
    ref_max: float

    @property
    def error(self) -> float:
        """The gated number: absolute error, or relative error for outputs larger than 1."""
        if self.shape_after != self.shape_before:
            return float("inf")
        return self.max_abs / max(1.0, self.ref_max)


@dataclass
class VerifyResult:
    """Per-output differences between two runs (``outputs`` in the order of the model's outputs)."""

    outputs: dict[str, OutputDiff] = field(default_factory=dict)
    options: str = "fp32"
    seed: int = 0
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    target: str = "x86"
    #: the reference run's outputs (``before``), kept for reuse, e.g. by :func:`phone_error`
    reference: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def max_abs(self) -> float:
        return max((d.max_abs for d in self.outputs.values()), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((d.max_rel for d in self.outputs.values()), default=0.0)

    @property
    def error(self) -> float:
        return max((d.error for d in self.outputs.values()), default=0.0)

    def ok(self, tolerance: float = DEFAULT_TOLERANCE) -> bool:
        return self.error <= tolerance

    def check(self, tolerance: float = DEFAULT_TOLERANCE) -> VerifyResult:
        """Raise :class:`VerificationError` (one line) when the error exceeds ``tolerance``."""
        if not self.ok(tolerance):
            worst = max(self.outputs.values(), key=lambda d: d.error)
            if worst.shape_after != worst.shape_before:
                raise VerificationError(f"output {worst.name!r} changed shape from {worst.shape_before} to "
                                        f"{worst.shape_after}")
            raise VerificationError(f"output {worst.name!r} changed by max abs {worst.max_abs:.3g} "
                                    f"(rel {worst.max_rel:.3g}) > tolerance {tolerance:g}")
        return self

    def __str__(self) -> str:
        shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in self.input_shapes.items())
        where = "" if self.target == "x86" else f", on {describe_target(self.target)}"
        lines = [f"verify ({self.options} options, seed {self.seed}, inputs {shapes}{where}):"]
        for d in self.outputs.values():
            shape = "x".join(map(str, d.shape_before))
            if d.shape_after != d.shape_before:
                lines.append(f"  {d.name} [{shape}]: SHAPE CHANGED to {d.shape_after}")
            else:
                lines.append(f"  {d.name} [{shape}]: max abs {d.max_abs:.3e}  max rel {d.max_rel:.3e}")
        return "\n".join(lines)


def input_shapes_for(graph: Graph, shape: tuple[int, ...] | Mapping[str, tuple[int, ...]] | None
                     ) -> dict[str, tuple[int, ...]]:
    """Normalise ``shape`` (one tuple for a one-input model, or a dict) or take the Input layers' sizes."""
    from ncnnpass.ir.runtime.shapes import normalize_input_shapes

    return normalize_input_shapes(graph, shape, required=True)


def make_inputs(shapes: Mapping[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    from ncnnpass.ir.runtime import check_input_shapes

    check_input_shapes(shapes)
    rng = np.random.default_rng(seed)
    return {k: rng.uniform(-1.0, 1.0, v).astype(np.float32) for k, v in shapes.items()}


def verify(before: Graph, after: Graph, shape: tuple[int, ...] | Mapping[str, tuple[int, ...]] | None = None,
           options: str | Mapping[str, object] = "fp32", seed: int = 0, num_threads: int | None = 1,
           target: str | Target | None = None) -> VerifyResult:
    """Run ``before`` and ``after`` in ncnn on the same seeded inputs; compare every protected output
    (one thread by default: deterministic, and the runs are short). ``target`` is where ncnn runs: a name
    (:mod:`ncnnpass.ir.runtime.targets`: ``x86``, ``isolated``, ``arm``, ``arm-a57``; None = the default target)
    or an open session (reused, left open)."""

    shapes = input_shapes_for(before, shape)
    feeds = make_inputs(shapes, seed)
    outs = _protected_outputs(before, after)
    with using_target(target) as where:
        ref = where.run(before, feeds, outs, options, num_threads)
        got = where.run(after, feeds, outs, options, num_threads)
    result = VerifyResult(options=options if isinstance(options, str) else "custom", seed=seed, input_shapes=shapes,
                          target=_target_name(target), reference=ref)
    result.outputs = _diffs(ref, got, outs)
    return result


def phone_error(before: Graph, after: Graph, shape: tuple[int, ...] | Mapping[str, tuple[int, ...]] | None = None,
                options: str | Mapping[str, object] = "default", seed: int = 0, num_threads: int | None = 1,
                target: str | Target | None = "arm", reference: Mapping[str, np.ndarray] | None = None
                ) -> tuple[VerifyResult, VerifyResult]:
    """How far ``before`` and ``after`` are, under ``options`` (ncnn's defaults: fp16 on a phone), from
    ``before`` under fp32 options, all on ``target`` (the emulated phone by default); the same seeded inputs.
    ``reference``: outputs of that fp32 run if already made (``verify(...).reference`` with the same seed)."""
    shapes = input_shapes_for(before, shape)
    feeds = make_inputs(shapes, seed)
    outs = _protected_outputs(before, after)
    label = f"{options if isinstance(options, str) else 'custom'} vs fp32"
    results = []
    with using_target(target) as where:
        ref = dict(reference) if reference else where.run(before, feeds, outs, "fp32", num_threads)
        for g in (before, after):
            got = where.run(g, feeds, outs, options, num_threads)
            r = VerifyResult(options=label, seed=seed, input_shapes=shapes, target=_target_name(target), reference=ref)
            r.outputs = _diffs(ref, got, outs)
            results.append(r)
    return results[0], results[1]


def _target_name(target: str | Target | None) -> str:
    return target.name if isinstance(target, Target) else normalize_target(target)


def _protected_outputs(before: Graph, after: Graph) -> list[str]:
    outs = list(before.outputs)
    missing = [n for n in outs if n not in after.blobs]
    if missing:
        raise VerificationError(f"the rewritten model lost output(s) {', '.join(missing)}")
    return outs


def _diffs(ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], outs: list[str]) -> dict[str, OutputDiff]:
    diffs = {}
    for name in outs:
        a, b = ref[name], got[name]
        ref_max = float(np.abs(a).max()) if a.size else 0.0
        if a.shape != b.shape:
            diffs[name] = OutputDiff(name, a.shape, b.shape, float("inf"), float("inf"), ref_max)
            continue
        diff = float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0
        rel = diff / ref_max if ref_max > 0 else (0.0 if diff == 0 else float("inf"))
        diffs[name] = OutputDiff(name, a.shape, b.shape, diff, rel, ref_max)
    return diffs
