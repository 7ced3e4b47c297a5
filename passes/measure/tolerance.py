"""The one tolerance semantics of ncnnpass, and how two sets of outputs differ.

A :class:`Tolerance` has an absolute part ``atol``, a relative part ``rtol`` and a statistic. An output
passes when

    stat(|got − ref|)  <=  max(atol, rtol · max|ref|)

``stat`` is the max (default), mean, median or 99th percentile of the element-wise absolute difference;
``max|ref|`` is the reference output's own magnitude, so the relative part is meaningful for outputs
with near-zero elements (an element-wise relative error is not). ``Tolerance.of(x)`` — what a CLI
``--tolerance X`` means — is ``atol = rtol = x``: x absolute for outputs of magnitude up to 1, x relative
above. A NaN/Inf where the reference is finite, or a shape that differs, never passes.

>>> cmp = compare_outputs(ref, got)                 # {name: array} each
>>> cmp.within(Tolerance.of(1e-4)), cmp.max_abs, str(cmp)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ncnnpass.ir.errors import NcnnpassError

__all__ = ["STATS", "Tolerance", "Diff", "Comparison", "diff_arrays", "compare_outputs", "max_abs_error"]

STATS = ("max", "mean", "median", "p99")


@dataclass(frozen=True)
class Tolerance:
    """``stat(|got − ref|) <= max(atol, rtol · max|ref|)`` (see the module docstring)."""

    atol: float = 1e-4
    rtol: float = 0.0
    stat: str = "max"

    def __post_init__(self) -> None:
        if not (self.atol >= 0 and self.rtol >= 0) or not np.isfinite(self.atol + self.rtol):
            raise NcnnpassError(f"a tolerance must be finite and >= 0 (atol {self.atol}, rtol {self.rtol})")
        if self.atol == 0 and self.rtol == 0:
            raise NcnnpassError("a tolerance needs atol or rtol above 0")
        if self.stat not in STATS:
            raise NcnnpassError(f"unknown error statistic {self.stat!r} (one of {', '.join(STATS)})")

    @classmethod
    def of(cls, value: float | Tolerance) -> Tolerance:
        """``--tolerance X``: X absolute up to magnitude 1, X relative above (``atol = rtol = X``)."""
        if isinstance(value, Tolerance):
            return value
        return cls(float(value), float(value))

    def bound(self, ref_magnitude: float) -> float:
        return max(self.atol, self.rtol * ref_magnitude)

    def __str__(self) -> str:
        if self.rtol == self.atol:
            text = f"{self.atol:g} (abs, or rel above 1)"
        elif self.rtol == 0:
            text = f"{self.atol:g} abs"
        else:
            text = f"max({self.atol:g} abs, {self.rtol:g} rel)"
        return text if self.stat == "max" else f"{self.stat} {text}"


@dataclass
class Diff:
    """How one output differs from its reference."""

    name: str
    ref_shape: tuple[int, ...]
    got_shape: tuple[int, ...] | None
    max_abs: float
    mean_abs: float
    median_abs: float
    p99_abs: float
    ref_max: float  # max |ref|
    finite: bool = True  # False: the candidate has NaN/Inf where the reference is finite

    @property
    def same_shape(self) -> bool:
        return self.got_shape is not None and self.got_shape == self.ref_shape

    @property
    def max_rel(self) -> float:
        """max |got − ref| / max |ref|."""
        if self.ref_max > 0:
            return self.max_abs / self.ref_max
        return 0.0 if self.max_abs == 0 else float("inf")

    def stat(self, which: str = "max") -> float:
        if not self.same_shape or not self.finite:
            return float("inf")
        return {"max": self.max_abs, "mean": self.mean_abs, "median": self.median_abs, "p99": self.p99_abs}[which]

    def error(self, tolerance: Tolerance) -> float:
        """The statistic over the bound's scale: <= 1 passes (inf for a NaN or a shape change)."""
        s = self.stat(tolerance.stat)
        bound = tolerance.bound(self.ref_max)
        return s / bound if np.isfinite(s) else float("inf")

    def within(self, tolerance: Tolerance) -> bool:
        return self.error(tolerance) <= 1.0

    def to_json(self) -> dict:
        return {"name": self.name, "ref_shape": list(self.ref_shape),
                "got_shape": None if self.got_shape is None else list(self.got_shape), "max_abs": self.max_abs,
                "max_rel": self.max_rel, "mean_abs": self.mean_abs, "median_abs": self.median_abs,
                "p99_abs": self.p99_abs, "ref_max": self.ref_max, "finite": self.finite}


def diff_arrays(name: str, ref: np.ndarray, got: np.ndarray | None, *, by_size: bool = False) -> Diff:
    """Compare one output. ``by_size``: compare element for element when the value counts agree (ncnn
    drops the batch dim and may drop other 1-dims; the ONNX keeps them)."""
    ref = np.asarray(ref)
    ref_shape = tuple(ref.shape)
    ref_max = float(np.nanmax(np.abs(ref))) if ref.size and np.isfinite(ref).any() else 0.0
    if got is None:
        return Diff(name, ref_shape, None, *(float("inf"),) * 4, ref_max, True)
    got = np.asarray(got)
    if by_size and got.size == ref.size:
        got = got.reshape(ref.shape)
    if got.shape != ref.shape:
        return Diff(name, ref_shape, tuple(got.shape), *(float("inf"),) * 4, ref_max, True)
    if not ref.size:
        return Diff(name, ref_shape, ref_shape, 0.0, 0.0, 0.0, 0.0, 0.0)
    r64, g64 = ref.astype(np.float64), got.astype(np.float64)
    finite = bool(np.all(np.isfinite(g64) | ~np.isfinite(r64)))
    d = np.abs(g64 - r64)
    d = np.where(np.isfinite(r64), d, 0.0)
    if not finite:
        return Diff(name, ref_shape, ref_shape, *(float("inf"),) * 4, ref_max, False)
    flat = d.reshape(-1)
    return Diff(name, ref_shape, ref_shape, float(flat.max()), float(flat.mean()), float(np.median(flat)),
                float(np.percentile(flat, 99)), ref_max, True)


@dataclass
class Comparison:
    """Per-output differences (in the reference's output order)."""

    diffs: dict[str, Diff] = field(default_factory=dict)

    @property
    def max_abs(self) -> float:
        return max((d.stat("max") for d in self.diffs.values()), default=0.0)

    @property
    def max_rel(self) -> float:
        return max((d.max_rel if d.same_shape and d.finite else float("inf") for d in self.diffs.values()),
                   default=0.0)

    def error(self, tolerance: Tolerance) -> float:
        """The worst output's :meth:`Diff.error` (<= 1 passes)."""
        return max((d.error(tolerance) for d in self.diffs.values()), default=0.0)

    def within(self, tolerance: Tolerance) -> bool:
        return self.error(tolerance) <= 1.0

    def worst(self, tolerance: Tolerance) -> Diff | None:
        return max(self.diffs.values(), key=lambda d: d.error(tolerance), default=None)

    def describe_failure(self, tolerance: Tolerance) -> str:
        """One line on the worst output (for errors)."""
        w = self.worst(tolerance)
        if w is None:
            return "no outputs compared"
        if w.got_shape is None:
            return f"output {w.name!r} is missing"
        if not w.same_shape:
            return f"output {w.name!r} changed shape from {w.ref_shape} to {w.got_shape}"
        if not w.finite:
            return f"output {w.name!r} has NaN/Inf"
        return (f"output {w.name!r} differs by {tolerance.stat} abs {w.stat(tolerance.stat):.3g} "
                f"(max rel {w.max_rel:.3g}) > tolerance {tolerance}")

    def to_json(self) -> dict:
        return {name: d.to_json() for name, d in self.diffs.items()}


def compare_outputs(ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray],
                    names: Iterable[str] | None = None, *, by_size: bool = False) -> Comparison:
    """Compare ``got`` against ``ref`` for ``names`` (default: every output of ``ref``)."""
    return Comparison({n: diff_arrays(n, ref[n], got.get(n), by_size=by_size)
                       for n in (list(ref) if names is None else names)})


def max_abs_error(ref: Iterable[np.ndarray], got: Iterable[np.ndarray]) -> float:
    """max |got − ref| over paired arrays (compared by value count); inf on NaN/Inf or a size mismatch."""
    worst = 0.0
    for r, g in zip(ref, got, strict=True):
        d = diff_arrays("", r, g, by_size=True)
        worst = max(worst, d.stat("max"))
    return worst
