"""The one reader of a PaddleOCR export's ``inference.yml`` / ``config.json``: :class:`ExportConfig`.

PaddleOCR's export writes ``inference.yml`` (PaddleOCR ≥ 2.6, both the legacy and the 3.x form);
PaddleX-style exports repeat the same tree in ``config.json``. The facts read from it:

- ``Global.model_name``;
- ``PostProcess.name`` and ``PostProcess.character_dict`` (the dictionary; a detector has none);
- the ``PreProcess.transform_ops`` list (``RecResizeImg`` / ``ClsResizeImg`` ``image_shape``,
  ``DetResizeForTest`` ``limit_side_len`` / ``resize_long``);
- ``Hpi.backend_configs.paddle_infer.trt_dynamic_shapes`` (min, opt, max per input; PaddleOCR 3.x).

:func:`read_export_config` is strict (bad files raise :class:`ExportConfigError` with file:line:column);
:func:`first_fact` is lenient: a missing or unreadable file only means that nothing comes from it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ncnnpass.ir.errors import SourceError

__all__ = ["SOURCES", "ExportConfig", "ExportConfigError", "first_fact", "read_export_config"]

SOURCES = ("inference.yml", "config.json")  # in the order they are asked

T = TypeVar("T")


class ExportConfigError(SourceError):
    """An ``inference.yml`` / ``config.json`` that cannot be read (with file:line:column where known)."""


def _chw(value: Any) -> tuple[int, int, int] | None:
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(type(v) is int and v > 0 for v in value):
        return (value[0], value[1], value[2])
    return None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class ExportConfig:
    """One parsed export config file; every accessor returns None when the file does not say."""

    path: Path
    data: dict[str, Any]

    @property
    def model_name(self) -> str | None:
        name = _mapping(self.data.get("Global")).get("model_name")
        return name if isinstance(name, str) else None

    @property
    def postprocess_name(self) -> str | None:
        name = _mapping(self.data.get("PostProcess")).get("name")
        return name if isinstance(name, str) else None

    @property
    def character_dict(self) -> list[str] | None:
        chars = _mapping(self.data.get("PostProcess")).get("character_dict")
        if isinstance(chars, list) and chars and all(isinstance(c, str) for c in chars):
            return list(chars)
        return None

    def transform_op(self, name: str) -> dict[str, Any] | None:
        """The arguments of the first ``PreProcess.transform_ops`` entry called ``name`` ({} when it has
        none), or None when there is no such entry."""
        ops = _mapping(self.data.get("PreProcess")).get("transform_ops")
        for op in ops if isinstance(ops, list) else []:
            if isinstance(op, dict) and name in op:
                return _mapping(op[name])
        return None

    def resize_shape(self, op: str = "RecResizeImg") -> tuple[int, int, int] | None:
        """``image_shape`` (C, H, W) of the ``op`` preprocessing (RecResizeImg, ClsResizeImg)."""
        return _chw((self.transform_op(op) or {}).get("image_shape"))

    @property
    def det_side_limit(self) -> int | None:
        """``DetResizeForTest``'s ``limit_side_len`` (or ``resize_long``): a limit, not a shape."""
        det = self.transform_op("DetResizeForTest") or {}
        side = det.get("limit_side_len") or det.get("resize_long")
        return side if type(side) is int and side > 0 else None

    def trt_dynamic_shapes(self, input_name: str) -> tuple[list[int], list[int], list[int]] | None:
        """(min, opt, max) of ``input_name`` (else of the first input listed), or None."""
        infer = _mapping(_mapping(_mapping(self.data.get("Hpi")).get("backend_configs")).get("paddle_infer"))
        shapes = infer.get("trt_dynamic_shapes")
        if not isinstance(shapes, dict) or not shapes:
            return None
        try:
            lo, opt, hi = (list(map(int, s)) for s in shapes.get(input_name) or next(iter(shapes.values())))
        except (TypeError, ValueError):
            return None
        return lo, opt, hi


def _yaml_error(exc: Exception, path: Path) -> ExportConfigError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        return ExportConfigError(f"not valid YAML: {getattr(exc, 'problem', None) or exc}", str(path),
                                 mark.line + 1, mark.column + 1)
    return ExportConfigError(f"cannot read: {exc}", str(path))


def read_export_config(path: str | os.PathLike) -> ExportConfig:
    """Parse ``path`` (YAML, or JSON for ``*.json``); an empty file is an empty config."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            if path.suffix == ".json":
                data = json.load(fh)
            else:
                import yaml

                try:
                    data = yaml.safe_load(fh)
                except yaml.YAMLError as exc:
                    raise _yaml_error(exc, path) from None
    except json.JSONDecodeError as exc:
        raise ExportConfigError(f"not valid JSON: {exc.msg}", str(path), exc.lineno, exc.colno) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportConfigError(f"cannot read: {exc}", str(path)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ExportConfigError(f"expected a mapping at the top, found {type(data).__name__}", str(path), 1, 1)
    return ExportConfig(path, data)


def first_fact(model_dir: str | os.PathLike, pick: Callable[[ExportConfig], T | None],
               sources: Sequence[str] = SOURCES) -> tuple[T, Path] | None:
    """``(pick(config), file)`` for the first of ``sources`` in ``model_dir`` where ``pick`` finds something;
    files that are missing or cannot be read are passed over."""
    for name in sources:
        path = Path(model_dir) / name
        if not path.is_file():
            continue
        try:
            found = pick(read_export_config(path))
        except (ExportConfigError, ImportError):
            continue
        if found:
            return found, path
    return None
