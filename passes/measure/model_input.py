"""A sample prepared for one model kind: the input tensor and what post-processing needs to map the output
back to the sample (the original image size, the resize ratios)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .samples import Sample

__all__ = ["ModelInput"]


@dataclass
class ModelInput:
    """``tensor``: 1 x C x H x W float32 as PaddleOCR's inference feeds the model."""

    sample: Sample
    tensor: np.ndarray
    src_hw: tuple[int, int]  #: the original image's height and width
    ratio_hw: tuple[float, float] = (1.0, 1.0)  #: det: resized / original, per axis
    content_width: int | None = None  #: rec/cls: width of the resized line before the zero padding

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)
