"""Numerical verification of a rewrite: the model before and after, in ncnn, on the same inputs.

>>> from ncnnpass.passes.measure.verify import verify
>>> result = verify(before, after, (3, 48, 320))           # fp32-only ncnn options, seed 0
>>> print(result); result.ok(1e-4)
>>> verify(before, after, options="default", target="arm")  # both run on the emulated phone CPU

Inputs are the measurement core's seeded uniform [-1, 1] arrays (:mod:`.inputs`). Every protected output
of ``before`` is compared (:mod:`.tolerance`: max abs, max rel = max|after − before| / max|before|, ...).
The gate of ``ncnnpass run --verify`` is :meth:`VerifyResult.ok` with :meth:`Tolerance.of` the tolerance:
X absolute for outputs of magnitude up to 1, X relative above.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import VerificationError
from ncnnpass.ir.featmask import carries_featmask
from ncnnpass.ir.runtime import Target, describe_target, normalize_target, using_target
from ncnnpass.ir.runtime.shapes import normalize_input_shapes
from ncnnpass.ir.runtime.targets import VulkanTarget

from .inputs import seeded_inputs
from .tolerance import Comparison, Diff, Tolerance, compare_outputs

__all__ = ["DEFAULT_TOLERANCE", "OutputDiff", "VerifyResult", "WriteCheck", "check_before_write", "input_shapes_for",
           "make_inputs", "phone_error", "verify"]

#: Default gate of ``ncnnpass run --verify``. Exact rewrites (weight copies, pure rewiring) differ by float
#: rounding only: ~1e-6 on PP-OCR outputs; folding scales/BatchNorm into weights ~1e-6..1e-5.
DEFAULT_TOLERANCE = Tolerance.of(1e-4)

OutputDiff = Diff  # the per-output record (kept under its older name)

Shape = tuple[int, ...] | Mapping[str, tuple[int, ...]] | None


@dataclass
class VerifyResult:
    """Per-output differences between two runs (``outputs`` in the order of the model's outputs)."""

    comparison: Comparison = field(default_factory=Comparison)
    options: str = "fp32"
    seed: int = 0
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    target: str = "x86"
    #: the reference run's outputs (``before``), kept for reuse, e.g. by :func:`phone_error`
    reference: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def outputs(self) -> dict[str, Diff]:
        return self.comparison.diffs

    @property
    def max_abs(self) -> float:
        return self.comparison.max_abs

    @property
    def max_rel(self) -> float:
        return self.comparison.max_rel

    def error(self, tolerance: float | Tolerance = DEFAULT_TOLERANCE) -> float:
        """The worst output's error relative to ``tolerance``'s bound (<= 1 passes)."""
        return self.comparison.error(Tolerance.of(tolerance))

    def ok(self, tolerance: float | Tolerance = DEFAULT_TOLERANCE) -> bool:
        return self.comparison.within(Tolerance.of(tolerance))

    def check(self, tolerance: float | Tolerance = DEFAULT_TOLERANCE) -> VerifyResult:
        """Raise :class:`VerificationError` (one line) when an output misses ``tolerance``."""
        tol = Tolerance.of(tolerance)
        if not self.comparison.within(tol):
            raise VerificationError(self.comparison.describe_failure(tol))
        return self

    def __str__(self) -> str:
        shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in self.input_shapes.items())
        where = "" if self.target == "x86" else f", on {describe_target(self.target)}"
        lines = [f"verify ({self.options} options, seed {self.seed}, inputs {shapes}{where}):"]
        for d in self.outputs.values():
            shape = "x".join(map(str, d.ref_shape))
            if not d.same_shape:
                lines.append(f"  {d.name} [{shape}]: SHAPE CHANGED to {d.got_shape}")
            else:
                lines.append(f"  {d.name} [{shape}]: max abs {d.max_abs:.3e}  max rel {d.max_rel:.3e}")
        return "\n".join(lines)


def input_shapes_for(graph: Graph, shape: Shape) -> dict[str, tuple[int, ...]]:
    """Normalise ``shape`` (one tuple for a one-input model, or a dict) or take the Input layers' sizes."""
    return normalize_input_shapes(graph, shape, required=True)


def make_inputs(shapes: Mapping[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    """The measurement core's seeded inputs (:func:`.inputs.seeded_inputs`)."""
    return seeded_inputs(shapes, seed)


def _label(options: str | Mapping[str, object]) -> str:
    return options if isinstance(options, str) else "custom"


def _target_name(target: str | Target | None) -> str:
    return target.name if isinstance(target, Target) else normalize_target(target)


def verify(before: Graph, after: Graph, shape: Shape = None, options: str | Mapping[str, object] = "fp32",
           seed: int = 0, num_threads: int | None = 1, target: str | Target | None = None) -> VerifyResult:
    """Run ``before`` and ``after`` in ncnn on the same seeded inputs; compare every protected output (one
    thread by default: deterministic, and the runs are short). ``target`` is where ncnn runs: a name
    (``x86``, ``isolated``, ``arm``, ``arm-a57``; None = the default target) or an open session."""
    shapes = input_shapes_for(before, shape)
    feeds = seeded_inputs(shapes, seed)
    outs = _protected_outputs(before, after)
    with using_target(target) as where:
        ref = where.run(before, feeds, outs, options, num_threads)
        got = where.run(after, feeds, outs, options, num_threads)
    return VerifyResult(compare_outputs(ref, got, outs), _label(options), seed, shapes, _target_name(target), ref)


def phone_error(before: Graph, after: Graph, shape: Shape = None, options: str | Mapping[str, object] = "default",
                seed: int = 0, num_threads: int | None = 1, target: str | Target | None = "arm",
                reference: Mapping[str, np.ndarray] | None = None) -> tuple[VerifyResult, VerifyResult]:
    """How far ``before`` and ``after`` are, under ``options`` (ncnn's defaults: fp16 on a phone), from
    ``before`` under fp32 options, all on ``target`` (the emulated phone by default); the same seeded inputs.
    ``reference``: outputs of that fp32 run if already made (``verify(...).reference`` with the same seed)."""
    shapes = input_shapes_for(before, shape)
    feeds = seeded_inputs(shapes, seed)
    outs = _protected_outputs(before, after)
    label = f"{_label(options)} vs fp32"
    results = []
    with using_target(target) as where:
        ref = dict(reference) if reference else where.run(before, feeds, outs, "fp32", num_threads)
        for g in (before, after):
            got = where.run(g, feeds, outs, options, num_threads)
            results.append(VerifyResult(compare_outputs(ref, got, outs), label, seed, shapes, _target_name(target),
                                        ref))
    return results[0], results[1]


def _protected_outputs(before: Graph, after: Graph) -> list[str]:
    outs = list(before.outputs)
    missing = [n for n in outs if n not in after.blobs]
    if missing:
        raise VerificationError(f"the rewritten model lost output(s) {', '.join(missing)}")
    return outs


@dataclass
class WriteCheck:
    """What ``ncnnpass run`` checks before writing a rewritten model: lines to print, and why not to write."""

    lines: list[str] = field(default_factory=list)
    refusal: str | None = None
    #: the every-path check (:mod:`.paths`), when the file carries featmask bits
    paths: object | None = None


def check_before_write(before: Graph | None, after: Graph, shape: Shape, *, target: str, seed: int = 0,
                       tolerance: float | Tolerance = DEFAULT_TOLERANCE, checked_on_target: bool = False,
                       paths: str | Iterable[str] | None = "available", progress=None) -> WriteCheck:
    """``before`` given (``--verify``): the outputs before and after in ncnn under fp32 options on ``target``
    must agree within ``tolerance``. A file that carries featmask bits must then run correctly on every one of
    ``paths`` (:func:`.paths.check_every_path`: x86 and the provisioned ARM and Vulkan runtimes by default), the
    target's own path skipped when a pass already measured it there (``checked_on_target``). On a device target
    (ARM, Vulkan) whose path that does not cover, the rewritten model must run there under default options
    without crash or NaN/Inf (measured against ``before``'s fp32 outputs when verifying)."""
    from .paths import check_every_path, path_of_target, resolve_paths

    tol = Tolerance.of(tolerance)
    out = WriteCheck()
    name = normalize_target(target)
    device = name.startswith("arm") or name == "vulkan"
    reference = None
    if before is not None:
        result = verify(before, after, shape, options="fp32", seed=seed, target=target)
        out.lines.append(str(result))
        if not result.ok(tol):
            out.refusal = result.comparison.describe_failure(tol)
            return out
        out.lines.append(f"verified: max abs {result.max_abs:.3e}, max rel {result.max_rel:.3e} <= tolerance {tol}")
        reference = result.reference
    own = path_of_target(target)
    chosen, unavailable = resolve_paths(paths)
    every = carries_featmask(after) and bool(chosen or unavailable)
    covered = every and own in chosen
    if device and not checked_on_target and not covered:
        out.refusal = _device_check(before, after, shape, target, seed, reference, out.lines)
        if out.refusal:
            return out
    if every:
        report = check_every_path(after, shape, seed=seed, paths=paths, skip=[own] if checked_on_target else [],
                                  progress=progress)
        out.paths = report
        out.lines.extend(report.lines())
        out.refusal = report.refusal
    return out


def _device_check(before: Graph | None, after: Graph, shape: Shape, target: str, seed: int,
                  reference: Mapping[str, np.ndarray] | None, lines: list[str]) -> str | None:
    """The rewritten model under default options on a device target: no crash, no NaN/Inf."""
    if before is None:  # one run: does it run there at all
        feeds = seeded_inputs(input_shapes_for(after, shape), seed)
        with using_target(target) as where:
            outs = where.run(after, feeds, list(after.outputs), "default", 1)
        finite = all(np.all(np.isfinite(a)) for a in outs.values())
    else:
        was, now = phone_error(before, after, shape, seed=seed, target=target, reference=reference)
        what = "GPU" if normalize_target(target) == "vulkan" else "phone"
        lines.append(f"{what} error on {describe_target(target)}, ncnn default options vs fp32: "
                     f"before {was.max_abs:.3e}, after {now.max_abs:.3e} (max abs)")
        finite = bool(np.isfinite(now.max_abs))
    with using_target(target) as where:
        if isinstance(where, VulkanTarget):
            fallback = where.fallback_layers(after, "default", 1)
            if fallback:
                lines.append(f"{describe_target(target)}: {len(fallback)} layer(s) have no Vulkan implementation and "
                             "run on the CPU: " + ", ".join(f"{t} {n}" for n, t in fallback[:8])
                             + (" ..." if len(fallback) > 8 else ""))
    if not finite:
        return f"the model returns NaN/Inf on {describe_target(target)} under default options"
    return None
