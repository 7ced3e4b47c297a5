"""What kind of PaddleOCR model a source is, and the input it expects: :func:`read_model_info`.

Facts come, in this order, from:

1. ``inference.yml`` next to a Paddle export (PaddleOCR ≥ 2.6 and PaddleX/PaddleOCR 3.x write it; parsed
   by :mod:`ncnnpass.passes.measure.export_config`):
   ``Global.model_name``; ``PostProcess.name`` (``DBPostProcess`` … → det, ``*LabelDecode`` → rec,
   ``ClsPostProcess`` → cls); the input shape from ``PreProcess.transform_ops`` (``RecResizeImg`` /
   ``ClsResizeImg`` ``image_shape``; ``DetResizeForTest`` ``limit_side_len``/``resize_long`` is only a
   limit) and ``PostProcess.character_dict`` (the dictionary).
2. The ONNX model: input dims (symbolic or ≤ 0 = dynamic), output rank (N×1×H×W → det, N×T×K → rec,
   N×K with small K → cls) and the ``character`` metadata key (rapidocr's ONNX files).
3. The directory or file name (``*_det_*``, ``*_rec_*``, ``*_cls_*``, ``textline_ori``), the family-wide guess.

Per-kind defaults follow PaddleOCR's own preprocessing (``tools/infer/predict_*.py``): rec 3×48×320 with
a dynamic width (v3+; v2 models are 32 high, which the ONNX input dims say), cls 3×48×192, det 3×640×640
with both H and W dynamic (DetResizeForTest feeds any multiple of 32; 640 keeps verification cheap; the
yml's side limit is kept as :attr:`ModelInfo.max_side`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ncnnpass.ir.errors import NcnnpassError

from .export_config import ExportConfigError, read_export_config

__all__ = ["ModelInfo", "read_model_info", "DEFAULT_SHAPES", "VARIABLE_DIMS", "InferenceYmlError"]

DEFAULT_SHAPES: dict[str | None, tuple[int, int, int]] = {
    "rec": (3, 48, 320), "cls": (3, 48, 192), "det": (3, 640, 640), None: (3, 48, 320)}
# Which of (H, W) a deployed model of this kind is fed at varying sizes.
VARIABLE_DIMS: dict[str | None, tuple[bool, bool]] = {
    "rec": (False, True), "cls": (False, True), "det": (True, True), None: (False, True)}

_DET_POST = ("DBPostProcess", "EASTPostProcess", "SASTPostProcess", "PSEPostProcess", "FCEPostProcess",
             "CTPostProcess", "DistillationDBPostProcess")


InferenceYmlError = ExportConfigError  # the name callers catch; the file is parsed in export_config


@dataclass
class ModelInfo:
    """Facts about one PaddleOCR model (see the module docstring for where each comes from)."""

    kind: str | None  # "rec" | "det" | "cls" | None (unknown)
    input_shape: tuple[int, int, int]  # default C, H, W to convert and verify at
    dynamic: tuple[bool, bool] = (False, True)  # whether H / W may vary at inference
    name: str | None = None
    dictionary: list[str] | None = None
    max_side: int | None = None  # det: DetResizeForTest's side limit
    yml_shape: tuple[int, int, int] | None = None  # RecResizeImg / ClsResizeImg image_shape
    sources: list[str] = field(default_factory=list)  # where the facts came from

    def describe(self) -> str:
        c, h, w = self.input_shape
        dyn = "/".join(d for d, on in zip("HW", self.dynamic, strict=True) if on) or "none"
        bits = [self.kind or "unknown kind", f"{c}×{h}×{w}", f"dynamic {dyn}"]
        if self.name:
            bits.insert(0, self.name)
        if self.dictionary:
            bits.append(f"{len(self.dictionary)} characters")
        return ", ".join(bits) + (f" (from {', '.join(self.sources)})" if self.sources else "")


def _kind_from_post(name: str) -> str | None:
    if name in _DET_POST or name.endswith("DBPostProcess"):
        return "det"
    if name.endswith("LabelDecode"):
        return "rec"
    if name.startswith("Cls") or name == "Topk":  # PaddleX textline orientation uses Topk
        return "cls"
    return None


def _from_yml(path: Path, info: ModelInfo) -> None:
    config = read_export_config(path)
    info.name = config.model_name or info.name
    post = config.postprocess_name
    if post is not None:
        info.kind = _kind_from_post(post) or info.kind
    info.dictionary = config.character_dict or info.dictionary
    if info.kind is None:
        info.kind = next((kind for kind, op in (("det", "DetResizeForTest"), ("rec", "RecResizeImg"),
                                                ("cls", "ClsResizeImg")) if config.transform_op(op) is not None), None)
    if info.kind is None and info.name:
        info.kind = _kind_from_name(info.name)
    shape = config.resize_shape("RecResizeImg") or config.resize_shape("ClsResizeImg")
    if shape is not None:
        info.yml_shape = shape
    info.max_side = config.det_side_limit or info.max_side
    info.sources.append("inference.yml")


def _kind_from_name(name: str) -> str | None:
    low = name.lower()
    for kind, pattern in (("cls", r"(^|[_\-.])(cls|textline_ori|doc_ori)"), ("det", r"(^|[_\-.])det([_\-.]|$)"),
                          ("rec", r"(^|[_\-.])rec([_\-.]|$)")):
        if re.search(pattern, low):
            return kind
    return None


def _onnx_facts(onnx_path: Path, info: ModelInfo, kind_known: bool) -> tuple[list[int | None], bool]:
    """Fill kind (when unknown) and dictionary from the ONNX model; return its input dims and whether it has them."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:
        raise NcnnpassError(f"{onnx_path}: not a readable ONNX model ({exc})") from None
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]

    def dims(vi) -> list[int | None]:
        return [d.dim_value if d.dim_value > 0 else None for d in vi.type.tensor_type.shape.dim]

    in_dims = dims(inputs[0]) if inputs else []
    if not kind_known and model.graph.output:
        out = dims(model.graph.output[0])
        if len(out) == 4 and out[1] == 1:
            info.kind = "det"
        elif len(out) == 3:
            info.kind = "rec"
        elif len(out) == 2 and out[1] is not None and out[1] <= 8:
            info.kind = "cls"
    if info.dictionary is None:
        meta = {p.key: p.value for p in model.metadata_props}
        if meta.get("character"):
            info.dictionary = meta["character"].splitlines()
    info.sources.append("ONNX")
    return in_dims, bool(in_dims)


def read_model_info(model: str | os.PathLike, onnx_path: str | os.PathLike | None = None) -> ModelInfo:
    """Facts about ``model`` (a Paddle inference directory or an ONNX file); ``onnx_path``: its ONNX form
    when ``model`` is a directory (for the input dims and output rank). See the module docstring."""
    src = Path(model)
    info = ModelInfo(None, DEFAULT_SHAPES[None])
    if not src.exists():
        raise NcnnpassError(f"model not found: {src}")
    yml = src / "inference.yml" if src.is_dir() else src.with_name("inference.yml")
    if src.is_dir() and yml.is_file():
        _from_yml(yml, info)
    kind_known = info.kind is not None
    onnx_file = Path(onnx_path) if onnx_path is not None else (src if src.is_file() else None)
    in_dims: list[int | None] = []
    if onnx_file is not None and onnx_file.is_file():
        in_dims, _ = _onnx_facts(onnx_file, info, kind_known)
    if info.kind is None:
        info.kind = _kind_from_name(src.name.rstrip("/")) or _kind_from_name(src.parent.name)
        if info.kind is not None:
            info.sources.append("file name")
    c, h, w = info.yml_shape or DEFAULT_SHAPES[info.kind]
    variable = VARIABLE_DIMS[info.kind]
    if len(in_dims) == 4:
        # static ONNX dims win over the defaults; only dims the ONNX leaves open can vary
        c = in_dims[1] or c
        h = in_dims[2] or h
        w = in_dims[3] or w
        info.dynamic = (variable[0] and in_dims[2] is None, variable[1] and in_dims[3] is None)
    else:
        info.dynamic = variable
    if info.kind == "det" and info.max_side:
        h, w = (min(h, info.max_side) // 32 * 32 or 32, min(w, info.max_side) // 32 * 32 or 32)
    info.input_shape = (c, h, w)
    if not info.sources:
        info.sources.append("family default")
    return info
