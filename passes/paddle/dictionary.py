"""What a PaddleOCR recognition export says about its input text: dictionary and image shape.

PaddleOCR's export writes ``PostProcess.character_dict`` and the ``RecResizeImg`` preprocessing into
``inference.yml`` (both the legacy and the 3.x form); PaddleX-style exports repeat them in
``config.json``. Either may be missing or hold neither (a detector has no dictionary).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["dictionary_from_model_dir", "dictionary_source", "rec_image_shape"]

SOURCES = ("inference.yml", "config.json")


def _character_dict(data: Any) -> list[str] | None:
    post = data.get("PostProcess") if isinstance(data, dict) else None
    chars = post.get("character_dict") if isinstance(post, dict) else None
    if isinstance(chars, list) and chars and all(isinstance(c, str) for c in chars):
        return list(chars)
    return None


def _read(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        if path.suffix == ".json":
            return json.load(fh)
        import yaml

        return yaml.safe_load(fh)


def _rec_resize(data: Any) -> tuple[int, int, int] | None:
    pre = data.get("PreProcess") if isinstance(data, dict) else None
    ops = pre.get("transform_ops") if isinstance(pre, dict) else None
    for op in ops if isinstance(ops, list) else []:
        args = op.get("RecResizeImg") if isinstance(op, dict) else None
        shape = args.get("image_shape") if isinstance(args, dict) else None
        if isinstance(shape, list) and len(shape) == 3 and all(type(v) is int and v > 0 for v in shape):
            return (shape[0], shape[1], shape[2])
    return None


def _first(model_dir: str | os.PathLike, pick: Any) -> tuple[Any, Path] | None:
    """``(pick(data), file)`` for the first of :data:`SOURCES` where ``pick`` finds something."""
    for name in SOURCES:
        path = Path(model_dir) / name
        if not path.is_file():
            continue
        try:
            found = pick(_read(path))
        except (OSError, ValueError, UnicodeDecodeError, ImportError):
            found = None  # an unreadable file only means nothing from it
        except Exception as exc:  # yaml.YAMLError without importing yaml up front
            if type(exc).__module__.split(".")[0] != "yaml":
                raise
            found = None
        if found:
            return found, path
    return None


def dictionary_source(model_dir: str | os.PathLike) -> tuple[list[str], Path] | None:
    """``(characters, file)`` from the first of ``inference.yml``/``config.json`` that has them."""
    return _first(model_dir, _character_dict)


def rec_image_shape(model_dir: str | os.PathLike) -> tuple[int, int, int] | None:
    """``RecResizeImg.image_shape`` (C, H, W) of the export's preprocessing, or None."""
    found = _first(model_dir, _rec_resize)
    return found[0] if found else None


def dictionary_from_model_dir(model_dir: str | os.PathLike) -> list[str] | None:
    """The characters of ``PostProcess.character_dict`` (inference.yml, then config.json), or None."""
    found = dictionary_source(model_dir)
    return found[0] if found else None
