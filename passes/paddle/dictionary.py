"""The character dictionary a PaddleOCR export carries: ``PostProcess.character_dict``.

PaddleOCR's export writes it into ``inference.yml`` (both the legacy and the 3.x form); PaddleX-style
exports repeat it in ``config.json``. Either may be missing or hold no list (a detector has none).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["dictionary_from_model_dir", "dictionary_source"]

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


def dictionary_source(model_dir: str | os.PathLike) -> tuple[list[str], Path] | None:
    """``(characters, file)`` from the first of ``inference.yml``/``config.json`` that has them."""
    for name in SOURCES:
        path = Path(model_dir) / name
        if not path.is_file():
            continue
        try:
            chars = _character_dict(_read(path))
        except (OSError, ValueError, UnicodeDecodeError, ImportError):
            chars = None  # an unreadable file only means no dictionary from it
        except Exception as exc:  # yaml.YAMLError without importing yaml up front
            if type(exc).__module__.split(".")[0] != "yaml":
                raise
            chars = None
        if chars:
            return chars, path
    return None


def dictionary_from_model_dir(model_dir: str | os.PathLike) -> list[str] | None:
    """The characters of ``PostProcess.character_dict`` (inference.yml, then config.json), or None."""
    found = dictionary_source(model_dir)
    return found[0] if found else None
