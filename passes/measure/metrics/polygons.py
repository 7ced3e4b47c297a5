"""Polygon areas and IoU with pyclipper (any simple or self-touching polygon, not only convex quads).

Coordinates are scaled to integers (pyclipper works on integers) by :data:`SCALE`; areas come back in
square pixels.
"""

from __future__ import annotations

import numpy as np
import pyclipper

__all__ = ["polygon_area", "intersection_area", "iou", "SCALE"]

SCALE = 1024.0  # 1/1024 pixel resolution (int64 holds pages of any size)


def _path(points: np.ndarray) -> list[tuple[int, int]]:
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return [(int(round(x * SCALE)), int(round(y * SCALE))) for x, y in p]


def _area(paths: list) -> float:
    # outer rings come back counter-clockwise in pyclipper's orientation (positive), holes negative
    return abs(sum(pyclipper.Area(p) for p in paths)) / (SCALE * SCALE)


def _clip(a: np.ndarray, b: np.ndarray | None, op: int) -> float:
    pc = pyclipper.Pyclipper()
    try:
        pc.AddPath(_path(a), pyclipper.PT_SUBJECT, True)
        if b is not None:
            pc.AddPath(_path(b), pyclipper.PT_CLIP, True)
    except pyclipper.ClipperException:  # degenerate polygon (fewer than 3 distinct points, zero area)
        return 0.0
    return _area(pc.Execute(op, pyclipper.PFT_NONZERO, pyclipper.PFT_NONZERO))


def polygon_area(points: np.ndarray) -> float:
    """Area covered by the polygon (self-overlaps counted once)."""
    return _clip(points, None, pyclipper.CT_UNION)


def intersection_area(a: np.ndarray, b: np.ndarray) -> float:
    return _clip(a, b, pyclipper.CT_INTERSECTION)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two polygons (0 when either has no area)."""
    inter = intersection_area(a, b)
    if inter <= 0.0:
        return 0.0
    union = polygon_area(a) + polygon_area(b) - inter
    return inter / union if union > 0 else 0.0
