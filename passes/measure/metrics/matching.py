"""One-to-one matching of detected boxes to reference boxes at IoU >= 0.5, and precision/recall/F.

Pairs are taken greedily by descending IoU, each box used once (ties keep the lower indices first).
Reference boxes marked ``ignore`` (PaddleOCR's ``###``) count neither way: a detection that lies mostly
inside one (intersection / its own area > 0.5, as PaddleOCR's ``DetectionIoUEvaluator``) is dropped from
the count, and the ignored box is never a miss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .polygons import intersection_area, iou, polygon_area

__all__ = ["Matching", "match_boxes", "IOU_THRESHOLD", "prf"]

IOU_THRESHOLD = 0.5


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F; an empty side counts as perfect (nothing found of nothing)."""
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


@dataclass
class Matching:
    pairs: list[tuple[int, int, float]] = field(default_factory=list)  #: (detection, reference, IoU)
    unmatched_detections: list[int] = field(default_factory=list)
    missed_references: list[int] = field(default_factory=list)
    ignored_detections: list[int] = field(default_factory=list)

    @property
    def tp(self) -> int:
        return len(self.pairs)

    @property
    def fp(self) -> int:
        return len(self.unmatched_detections)

    @property
    def fn(self) -> int:
        return len(self.missed_references)

    @property
    def precision_recall_f(self) -> tuple[float, float, float]:
        return prf(self.tp, self.fp, self.fn)


def match_boxes(detections: Sequence[np.ndarray], references: Sequence[np.ndarray],
                ignore: Sequence[bool] | None = None, threshold: float = IOU_THRESHOLD) -> Matching:
    """Match ``detections`` to ``references`` (polygons N x 2) at IoU >= ``threshold``."""
    ignore = list(ignore) if ignore is not None else [False] * len(references)
    if len(ignore) != len(references):
        raise ValueError(f"{len(ignore)} ignore flags for {len(references)} references")
    out = Matching()
    dropped = set()
    for d, det in enumerate(detections):
        area = polygon_area(det)
        for r, ref in enumerate(references):
            if ignore[r] and area > 0 and intersection_area(det, ref) / area > 0.5:
                dropped.add(d)
                break
    out.ignored_detections = sorted(dropped)
    cand = []
    for d, det in enumerate(detections):
        if d in dropped:
            continue
        for r, ref in enumerate(references):
            if ignore[r]:
                continue
            v = iou(det, ref)
            if v >= threshold:
                cand.append((-v, d, r))
    used_d, used_r = set(), set()
    for neg, d, r in sorted(cand):
        if d in used_d or r in used_r:
            continue
        used_d.add(d)
        used_r.add(r)
        out.pairs.append((d, r, -neg))
    out.unmatched_detections = [d for d in range(len(detections)) if d not in used_d and d not in dropped]
    out.missed_references = [r for r in range(len(references)) if r not in used_r and not ignore[r]]
    return out
