"""PaddleOCR's detection preprocessing: ``DetResizeForTest`` + ``NormalizeImage`` + ``ToCHWImage``.

- Images whose height + width < 64 are first zero-padded to at least 32 x 32 (the original size is kept
  for mapping boxes back).
- Resize (``limit_type``): ``max`` scales down so the longer side is at most ``limit_side_len``; ``min``
  scales up so the shorter side is at least ``limit_side_len``; ``resize_long`` scales the longer side to
  it. A result beyond ``max_side_limit`` (4000) is scaled to fit. Each side is then rounded to a multiple
  of 32 (Python's ``round``, at least 32) and the image resized to it (bilinear).
- Normalise in the decoded BGR channel order, as PaddleOCR does: ``(x * 1/255 - mean) / std`` with
  ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), float32; HWC -> CHW.

Defaults per generation (:func:`det_resize_for`): PaddleOCR 2.x inference (``tools/infer``) and
PaddleOCR 3.x / PaddleX for the PP-OCRv3/v4/v5 detectors use ``limit_side_len`` 960 with ``limit_type``
``max``; an ``inference.yml`` that names ``limit_side_len`` or ``resize_long`` (and ``limit_type``) sets them,
as PaddleX reads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from ncnnpass.ir.errors import NcnnpassError

from .export_config import ExportConfig, first_fact

__all__ = ["DetResize", "det_resize_for", "det_resize_shape", "det_tensor", "MEAN", "STD"]

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
LIMIT_TYPES = ("max", "min", "resize_long")


@dataclass(frozen=True)
class DetResize:
    limit_side_len: int = 960
    limit_type: str = "max"
    max_side_limit: int = 4000

    def __post_init__(self) -> None:
        if self.limit_type not in LIMIT_TYPES:
            raise NcnnpassError(f"DetResizeForTest limit_type {self.limit_type!r}: expected one of "
                                f"{', '.join(LIMIT_TYPES)}")
        if self.limit_side_len < 1:
            raise NcnnpassError(f"DetResizeForTest limit_side_len must be positive, got {self.limit_side_len}")

    @classmethod
    def from_config(cls, config: ExportConfig) -> DetResize | None:
        """From ``PreProcess.transform_ops.DetResizeForTest`` (None when the file has no such op)."""
        op = config.transform_op("DetResizeForTest")
        if op is None:
            return None
        side = op.get("limit_side_len") or op.get("resize_long")
        kind = op.get("limit_type")
        return cls(int(side) if type(side) is int and side > 0 else cls.limit_side_len,
                   kind if kind in LIMIT_TYPES else cls.limit_type,
                   int(op.get("max_side_limit") or cls.max_side_limit))


def det_resize_for(model_dir: str | os.PathLike | None) -> DetResize:
    """The resize a detector export asks for (``inference.yml`` / ``config.json``), else the default."""
    if model_dir is not None and os.path.isdir(model_dir):
        found = first_fact(model_dir, DetResize.from_config)
        if found:
            return found[0]
    return DetResize()


def det_resize_shape(h: int, w: int, resize: DetResize | None = None) -> tuple[int, int]:
    """The model input (height, width) ``DetResizeForTest`` gives an ``h`` x ``w`` image."""
    resize = resize or DetResize()
    side = resize.limit_side_len
    if resize.limit_type == "max":
        ratio = float(side) / max(h, w) if max(h, w) > side else 1.0
    elif resize.limit_type == "min":
        ratio = float(side) / min(h, w) if min(h, w) < side else 1.0
    else:
        ratio = float(side) / max(h, w)
    rh, rw = int(h * ratio), int(w * ratio)
    if max(rh, rw) > resize.max_side_limit:
        scale = float(resize.max_side_limit) / max(rh, rw)
        rh, rw = int(rh * scale), int(rw * scale)
    return max(int(round(rh / 32) * 32), 32), max(int(round(rw / 32) * 32), 32)


def det_tensor(img: np.ndarray, resize: DetResize | None = None) -> tuple[np.ndarray, tuple[float, float]]:
    """``1 x 3 x H x W`` float32 input for a BGR uint8 image, and (ratio_h, ratio_w) = resized / original."""
    resize = resize or DetResize()
    src = img
    if img.shape[0] + img.shape[1] < 64:
        src = np.zeros((max(32, img.shape[0]), max(32, img.shape[1]), img.shape[2]), np.uint8)
        src[:img.shape[0], :img.shape[1]] = img
    h, w = src.shape[:2]
    rh, rw = det_resize_shape(h, w, resize)
    resized = cv2.resize(src, (rw, rh))
    mean = np.array(MEAN, dtype=np.float32).reshape(1, 1, 3)
    std = np.array(STD, dtype=np.float32).reshape(1, 1, 3)
    norm = (resized.astype("float32") * np.float32(1.0 / 255.0) - mean) / std
    return np.ascontiguousarray(norm.transpose((2, 0, 1))[None]), (rh / float(h), rw / float(w))
