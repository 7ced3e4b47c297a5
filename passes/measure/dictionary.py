"""What a PaddleOCR recognition export says about its input text: dictionary and image shape.

Thin lookups over :mod:`.export_config` (which parses the files): the first of ``inference.yml`` and
``config.json`` that holds the fact wins; either may be missing or hold neither (a detector has no
dictionary).
"""

from __future__ import annotations

import os
from pathlib import Path

from .export_config import ExportConfig, first_fact

__all__ = ["dictionary_from_model_dir", "dictionary_source", "rec_image_shape"]


def dictionary_source(model_dir: str | os.PathLike) -> tuple[list[str], Path] | None:
    """``(characters, file)`` from the first of ``inference.yml``/``config.json`` that has them."""
    return first_fact(model_dir, lambda config: config.character_dict)


def rec_image_shape(model_dir: str | os.PathLike) -> tuple[int, int, int] | None:
    """``RecResizeImg.image_shape`` (C, H, W) of the export's preprocessing, or None."""
    found = first_fact(model_dir, ExportConfig.resize_shape)
    return found[0] if found else None


def dictionary_from_model_dir(model_dir: str | os.PathLike) -> list[str] | None:
    """The characters of ``PostProcess.character_dict`` (inference.yml, then config.json), or None."""
    found = dictionary_source(model_dir)
    return found[0] if found else None
