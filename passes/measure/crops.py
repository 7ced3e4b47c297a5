"""Text lines cut out of a page as PaddleOCR's end-to-end inference does (``get_rotate_crop_image``).

A 4-point box is warped (perspective, cubic, replicated border) to an upright rectangle as wide as its
longer horizontal edge and as high as its longer vertical edge; a result at least 1.5 times as high as wide
is turned by 90 degrees (vertical text). Polygons with another number of points are first replaced by their
minimum-area rectangle (PaddleOCR's ``get_minarea_rect_crop``).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["rotate_crop", "quad_of"]


def quad_of(points: np.ndarray) -> np.ndarray:
    """4 x 2 float32 corners: the points themselves when there are four, else their min-area rectangle
    ordered top-left, top-right, bottom-right, bottom-left."""
    p = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    if len(p) == 4:
        return p
    from .metrics.db_postprocess import min_area_box

    return min_area_box(p)[0]


def rotate_crop(img: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The upright line image inside ``points`` (see the module docstring)."""
    q = quad_of(points)
    w = int(max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[2] - q[3])))
    h = int(max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2])))
    w, h = max(w, 1), max(h, 1)
    target = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    m = cv2.getPerspectiveTransform(q, target)
    out = cv2.warpPerspective(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if out.shape[0] * 1.0 / out.shape[1] >= 1.5:
        out = np.rot90(out)
    return np.ascontiguousarray(out)
