"""Rank agreement of two lists of scores (Spearman's rho, Kendall's tau-b), for the benchmarks that ask
whether a cheap proxy orders placements as the target does. Non-finite scores rank last (as 1e9)."""

from __future__ import annotations

import numpy as np


def _finite(v: float) -> float:
    return v if np.isfinite(v) else 1e9


def ranks(v: list[float]) -> list[float]:
    """1-based ranks, ties sharing their mean rank."""
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rho (NaN when either list is constant)."""
    ra, rb = np.array(ranks([_finite(x) for x in a])), np.array(ranks([_finite(x) for x in b]))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def kendall(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b (ties in either list counted as ties; NaN without an ordered pair)."""
    a, b = [_finite(x) for x in a], [_finite(x) for x in b]
    conc = disc = ta = tb = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
            if da == 0 and db == 0:
                continue
            if da == 0:
                ta += 1
            elif db == 0:
                tb += 1
            elif da == db:
                conc += 1
            else:
                disc += 1
    n0 = conc + disc
    return float((conc - disc) / np.sqrt((n0 + ta) * (n0 + tb))) if n0 else float("nan")


__all__ = ["kendall", "ranks", "spearman"]
