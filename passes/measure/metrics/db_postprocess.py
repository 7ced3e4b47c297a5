"""PaddleOCR's DB post-processing: a detector's probability map to text boxes in original-image pixels.

What ``DBPostProcess`` (box_type ``quad``) followed by ``TextDetector.filter_tag_det_res`` do in PaddleOCR's
inference, written from their description:

1. binarise the map at ``thresh`` (optionally dilated by a 2x2 kernel); take the contours (OpenCV, list
   retrieval, simple chain approximation), at most ``max_candidates``;
2. per contour the minimum-area rectangle; skip it when its short side < ``min_size`` (3);
3. score = mean map value inside the rectangle (``fast``) or inside the contour (``slow``); skip below
   ``box_thresh``;
4. unclip: offset the rectangle outwards by ``area * unclip_ratio / perimeter`` (pyclipper, round joins),
   take the minimum-area rectangle of the result; skip when its short side < ``min_size + 2``;
5. scale to the original image (x * src_w / map_w, rounded, clipped to [0, src_w]);
6. order the corners clockwise from the top-left (smallest x + y), clip to the image, and drop boxes
   whose first edge or height is <= 3 pixels.

Defaults are PaddleOCR's inference defaults: thresh 0.3, box_thresh 0.6, unclip_ratio 1.5, max_candidates
1000, score_mode fast, no dilation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import pyclipper

__all__ = ["DBParams", "db_boxes", "min_area_box", "order_clockwise"]


@dataclass(frozen=True)
class DBParams:
    thresh: float = 0.3
    box_thresh: float = 0.6
    unclip_ratio: float = 1.5
    max_candidates: int = 1000
    score_mode: str = "fast"
    use_dilation: bool = False
    min_size: int = 3


def min_area_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Corners of the minimum-area rectangle (top-left, top-right, bottom-right, bottom-left by PaddleOCR's
    x-then-y rule) and its short side."""
    rect = cv2.minAreaRect(points)
    pts = sorted(list(cv2.boxPoints(rect)), key=lambda p: p[0])
    left = (pts[0], pts[1]) if pts[1][1] > pts[0][1] else (pts[1], pts[0])
    right = (pts[2], pts[3]) if pts[3][1] > pts[2][1] else (pts[3], pts[2])
    box = np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)
    return box, float(min(rect[1]))


def _score_fast(prob: np.ndarray, box: np.ndarray) -> float:
    h, w = prob.shape
    x0 = int(np.clip(math.floor(box[:, 0].min()), 0, w - 1))
    x1 = int(np.clip(math.ceil(box[:, 0].max()), 0, w - 1))
    y0 = int(np.clip(math.floor(box[:, 1].min()), 0, h - 1))
    y1 = int(np.clip(math.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    shifted = box.copy()
    shifted[:, 0] -= x0
    shifted[:, 1] -= y0
    cv2.fillPoly(mask, shifted.reshape(1, -1, 2).astype(np.int32), 1)
    return float(cv2.mean(prob[y0:y1 + 1, x0:x1 + 1], mask)[0])


def _score_slow(prob: np.ndarray, contour: np.ndarray) -> float:
    h, w = prob.shape
    c = contour.reshape(-1, 2).copy()
    x0, x1 = int(np.clip(c[:, 0].min(), 0, w - 1)), int(np.clip(c[:, 0].max(), 0, w - 1))
    y0, y1 = int(np.clip(c[:, 1].min(), 0, h - 1)), int(np.clip(c[:, 1].max(), 0, h - 1))
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    c[:, 0] -= x0
    c[:, 1] -= y0
    cv2.fillPoly(mask, c.reshape(1, -1, 2).astype(np.int32), 1)
    return float(cv2.mean(prob[y0:y1 + 1, x0:x1 + 1], mask)[0])


def _unclip(box: np.ndarray, ratio: float) -> np.ndarray:
    distance = cv2.contourArea(box) * ratio / cv2.arcLength(box, True)
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    grown = offset.Execute(distance)
    if not grown:
        return np.zeros((0, 1, 2), dtype=np.int32)
    return np.concatenate([np.asarray(p, dtype=np.int32) for p in grown]).reshape(-1, 1, 2)


def order_clockwise(box: np.ndarray) -> np.ndarray:
    """Top-left (min x + y), top-right, bottom-right (max x + y), bottom-left, as PaddleOCR's inference."""
    s = box.sum(axis=1)
    first, third = int(np.argmin(s)), int(np.argmax(s))
    rest = np.delete(box, (first, third), axis=0)
    diff = np.diff(rest, axis=1).reshape(-1)
    return np.array([box[first], rest[np.argmin(diff)], box[third], rest[np.argmax(diff)]], dtype=np.float32)


def db_boxes(prob_map: np.ndarray, src_hw: tuple[int, int], params: DBParams | None = None
             ) -> tuple[list[np.ndarray], list[float]]:
    """Boxes (4 x 2 float32, original-image pixels, clockwise from top-left) and their scores for one map
    (``H x W``, or any shape that squeezes to it) of an image that was ``src_hw`` before resizing."""
    params = params or DBParams()
    prob = np.asarray(prob_map, dtype=np.float32).squeeze()
    if prob.ndim != 2:
        raise ValueError(f"a DB probability map is H x W, got {'x'.join(map(str, np.shape(prob_map)))}")
    src_h, src_w = src_hw
    h, w = prob.shape
    mask = (prob > params.thresh).astype(np.uint8)
    if params.use_dilation:
        mask = cv2.dilate(mask, np.ones((2, 2), dtype=np.uint8))
    contours, _ = cv2.findContours(mask * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes, scores = [], []
    for contour in contours[:params.max_candidates]:
        box, short = min_area_box(contour)
        if short < params.min_size:
            continue
        score = _score_fast(prob, box) if params.score_mode == "fast" else _score_slow(prob, contour)
        if score < params.box_thresh:
            continue
        grown = _unclip(box, params.unclip_ratio)
        if len(grown) == 0:
            continue
        box, short = min_area_box(grown)
        if short < params.min_size + 2:
            continue
        box[:, 0] = np.clip(np.round(box[:, 0] / w * src_w), 0, src_w)
        box[:, 1] = np.clip(np.round(box[:, 1] / h * src_h), 0, src_h)
        box = order_clockwise(box.astype(np.int16).astype(np.float32))
        box[:, 0] = np.clip(box[:, 0], 0, src_w - 1).astype(np.int32)
        box[:, 1] = np.clip(box[:, 1], 0, src_h - 1).astype(np.int32)
        if int(np.linalg.norm(box[0] - box[1])) <= 3 or int(np.linalg.norm(box[0] - box[3])) <= 3:
            continue
        boxes.append(box)
        scores.append(score)
    return boxes, scores
