"""Error statistics of one ncnn tensor against its onnxruntime reference.

- ``max_abs``/``mean_abs``: of ``|ncnn − ort|``.
- ``max_rel``: max of ``|ncnn − ort| / |ort|``, where reference magnitudes below ``1e-3 × mean|ort|`` are
  raised to that floor (true zeros would make it infinite and say nothing).
- ``cosine``: cosine similarity of the flattened tensors (1.0 when both are all zero).
- ``min_tol``: the smallest ``t`` for which ``np.allclose(ncnn, ort, rtol=t, atol=t)`` holds, i.e.
  ``max |ncnn − ort| / (1 + |ort|)`` — the tolerance a test would need to pass with atol = rtol.
- ``scaled``: ``max_abs / max|ort|`` — scale-free, used to detect where error jumps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Metrics", "RefStats", "compute_metrics"]


@dataclass
class Metrics:
    max_abs: float
    mean_abs: float
    max_rel: float
    cosine: float
    min_tol: float
    scaled: float
    nonfinite: int = 0
    count: int = 0

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def _sq64(x: np.ndarray) -> float:
    """Sum of squares accumulated in float64 without BLAS (BLAS threads spin badly on a busy machine)."""
    return float(np.add.reduce(np.multiply(x, x, dtype=np.float64), dtype=np.float64))


@dataclass
class RefStats:
    """What the metrics need from a reference tensor, computed once and reused for every option set."""

    ref: np.ndarray  # flat float32
    peak: float
    norm2: float
    w_rel: np.ndarray  # 1 / max(|ref|, floor)
    w_tol: np.ndarray  # 1 / (1 + |ref|)
    finite: bool

    @classmethod
    def of(cls, ref: np.ndarray) -> RefStats:
        r = np.ascontiguousarray(ref, dtype=np.float32).reshape(-1)
        finite = bool(np.all(np.isfinite(r)))
        ar = np.abs(r)
        if not finite:
            ar = np.where(np.isfinite(ar), ar, np.float32(0))
        peak = float(ar.max()) if ar.size else 0.0
        floor = np.float32(max(1e-3 * float(ar.mean(dtype=np.float64)) if ar.size else 0.0, 1e-30))
        return cls(r, peak, _sq64(np.where(np.isfinite(r), r, 0) if not finite else r),
                   np.float32(1) / np.maximum(ar, floor), np.float32(1) / (ar + np.float32(1)), finite)


def compute_metrics(actual: np.ndarray, ref: np.ndarray | RefStats) -> Metrics:
    """Statistics of ``actual`` against ``ref`` (same size; a :class:`RefStats` to reuse its work)."""
    st = ref if isinstance(ref, RefStats) else RefStats.of(ref)
    a = np.ascontiguousarray(actual, dtype=np.float32).reshape(-1)
    r = st.ref
    n = int(r.size)
    if n == 0:
        return Metrics(0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0, 0)
    if a.size != n:
        raise ValueError(f"cannot compare {a.size} values with {n}")
    with np.errstate(over="ignore", invalid="ignore"):
        diff = a - r
    d = np.abs(diff)
    max_abs = float(d.max())
    if not math.isfinite(max_abs) or not st.finite:
        finite = np.isfinite(a) & np.isfinite(r)
        same = (a == r) | (np.isnan(a) & np.isnan(r))
        bad = int(np.count_nonzero(~finite & ~same))
        if bad:
            inf = float("inf")
            return Metrics(inf, inf, inf, float("nan"), inf, inf, bad, n)
        keep = finite
        return compute_metrics(a[keep], r[keep]) if np.any(keep) else Metrics(0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0, n)
    # float32 sums use numpy's pairwise summation (relative error ~1e-7 log n), no BLAS threads
    mean_abs = float(np.add.reduce(d)) / n
    max_rel = float((d * st.w_rel).max())
    min_tol = float((d * st.w_tol).max())
    nr2 = st.norm2
    with np.errstate(over="ignore", invalid="ignore"):
        dd = float(np.add.reduce(diff * diff))  # |a - r|^2
        dn = float(np.add.reduce(diff * (a + r)))  # |a|^2 - |r|^2, accurate even when tiny
    if not (math.isfinite(dd) and math.isfinite(dn)):  # float32 squares overflowed: redo in float64
        d64 = diff.astype(np.float64)
        dd = float(np.add.reduce(d64 * d64))
        dn = float(np.add.reduce(d64 * (a.astype(np.float64) + r)))
    na2 = max(nr2 + dn, 0.0)
    if na2 == 0.0 and nr2 == 0.0:
        cosine = 1.0
    elif na2 == 0.0 or nr2 == 0.0:
        cosine = 0.0
    else:
        # 1 - cos = (|a - r|^2 - (|a| - |r|)^2) / (2 |a| |r|), every term computed without cancellation
        na, nr = math.sqrt(na2), math.sqrt(nr2)
        gap = dn / (na + nr)
        cosine = max(-1.0, min(1.0, 1.0 - (dd - gap * gap) / (2.0 * na * nr)))
    peak = st.peak
    scaled = max_abs / peak if peak > 0 else (0.0 if max_abs == 0 else float("inf"))
    return Metrics(max_abs, mean_abs, max_rel, cosine, min_tol, scaled, 0, n)
