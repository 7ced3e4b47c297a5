"""Inputs for a comparison: seeded random, a ``.npy`` file, or a text-line image preprocessed as
PaddleOCR recognition does (keep aspect to height H, normalize to [-1, 1], pad right to width W).

Every input is a batch-1 NCHW (or N...) float32 array in ONNX layout. For images the width of the
real content is kept so errors in the padded region can be reported separately.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ncnnpass.ir import Graph
from ncnnpass.ir.errors import NcnnpassError

__all__ = ["InputError", "PreparedInput", "resolve_shape", "prepare_input", "REC_DEFAULT_SHAPE"]

REC_DEFAULT_SHAPE = (3, 48, 320)
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")


class InputError(NcnnpassError):
    """An input (shape, file) that does not fit the model."""


@dataclass
class PreparedInput:
    array: np.ndarray  # batch-1 array in ONNX layout, float32
    source: str  # "random (seed 0, uniform [-1, 1])", "npy: path", "image: path"
    shape_note: str = ""  # where the shape came from
    content_width: int | None = None  # image inputs: columns of real content (the rest is padding)

    @property
    def padded(self) -> bool:
        return self.content_width is not None and self.content_width < self.array.shape[-1]

    def to_dict(self) -> dict:
        return {"source": self.source, "shape": list(self.array.shape), "shape_note": self.shape_note,
                "content_width": self.content_width}


def _fmt(dims) -> str:
    return "×".join("?" if d is None else str(d) for d in dims)


def _ncnn_input_shape(graph: Graph) -> tuple[int, ...] | None:
    """(c, h, w) from an ``Input`` layer's params, when the converter wrote them."""
    for ly in graph.find("Input"):
        w, h, c = int(ly.get(0, 0)), int(ly.get(1, 0)), int(ly.get(2, 0))
        if w > 0 and h > 0 and c > 0:
            return (c, h, w)
        if w > 0 and h > 0:
            return (h, w)
        if w > 0:
            return (w,)
    return None


KIND_NAMES = {"rec": "recognition", "det": "detection", "cls": "direction classification"}


def resolve_shape(onnx_dims: list[int | None], graph: Graph | None, user: tuple[int, ...] | None,
                  kind: str | None = None) -> tuple[tuple[int, ...], str]:
    """The batch-1 ONNX input shape to use, and a note on where it came from. ``kind`` (rec, det, cls; from the
    ONNX's output or the model's inference.yml) picks the family default for dims the ONNX leaves open."""
    rank = len(onnx_dims)
    if user is not None:
        dims = tuple(user)
        if rank and len(dims) == rank - 1:
            dims = (1, *dims)
        if rank and len(dims) != rank:
            raise InputError(f"--shape {','.join(map(str, user))} has {len(user)} dims but the ONNX input is "
                             f"{_fmt(onnx_dims)} (give {rank - 1} dims without the batch, e.g. "
                             f"{','.join(str(d or 1) for d in onnx_dims[1:])})")
        if dims[0] != 1:
            raise InputError(f"--shape {','.join(map(str, user))}: only batch 1 can be compared (ncnn has no batch axis)")
        for k, (want, got) in enumerate(zip(onnx_dims, dims, strict=True)):
            if want is not None and k > 0 and want != got:
                raise InputError(f"--shape {','.join(map(str, user))} does not fit the ONNX input "
                                 f"{_fmt(onnx_dims)}: dim {k} must be {want}, not {got}")
        return dims, "--shape"
    known = _ncnn_input_shape(graph) if graph is not None else None
    if known is not None and rank == len(known) + 1:
        dims = (1, *known)
        if all(w is None or w == g for w, g in zip(onnx_dims[1:], known, strict=True)):
            return dims, "ncnn Input layer"
    if rank and all(d is not None for d in onnx_dims[1:]):
        return (1, *[int(d) for d in onnx_dims[1:]]), "ONNX input"  # type: ignore[misc]
    if rank == 4 and onnx_dims[1] in (None, 3):
        from ncnnpass.passes.measure.model_info import DEFAULT_SHAPES

        c, h, w = DEFAULT_SHAPES.get(kind, REC_DEFAULT_SHAPE)
        dims = (1, c, onnx_dims[2] or h, onnx_dims[3] or w)
        return dims, (f"default {c}×{h}×{w} for PaddleOCR {KIND_NAMES.get(kind or 'rec', 'recognition')} "
                      f"(the ONNX input is {_fmt(onnx_dims)}; pass --shape)")
    raise InputError(f"the ONNX input is {_fmt(onnx_dims)} with dynamic dims: pass --shape")


def prepare_input(source: str | os.PathLike | np.ndarray | None, onnx_dims: list[int | None],
                  graph: Graph | None = None, shape: tuple[int, ...] | None = None, seed: int = 0,
                  kind: str | None = None) -> PreparedInput:
    """Random (``source=None``), an array, a ``.npy`` path, or an image path -> :class:`PreparedInput`.
    ``kind``: the model family's kind, for the default shape of dims the ONNX leaves open."""
    if source is None:
        dims, note = resolve_shape(onnx_dims, graph, shape, kind)
        from ncnnpass.passes.measure.inputs import seeded_array

        arr = seeded_array(dims, seed)  # bounded: dims may come from a lying Input layer
        return PreparedInput(arr, f"random (seed {seed}, uniform [-1, 1])", note)
    if isinstance(source, np.ndarray):
        return _from_array(source, onnx_dims, "array", shape)
    path = os.fspath(source)
    if not os.path.exists(path):
        raise InputError(f"input not found: {path}")
    if path.lower().endswith(".npy"):
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise InputError(f"{path}: not a readable .npy file ({exc})") from None
        return _from_array(arr, onnx_dims, f"npy: {path}", shape)
    if path.lower().endswith(_IMAGE_EXT) or _looks_like_image(path):
        return _from_image(path, onnx_dims, shape)
    raise InputError(f"{path}: expected a .npy array or an image (png, jpg, ...)")


def _looks_like_image(path: str) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(12)
    return head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"BM", b"GIF8")) or head[8:12] == b"WEBP"


def _from_array(arr: np.ndarray, onnx_dims: list[int | None], source: str, shape: tuple[int, ...] | None
                ) -> PreparedInput:
    if arr.dtype.kind not in "fiu":
        raise InputError(f"{source}: dtype {arr.dtype} is not numeric")
    a = np.ascontiguousarray(arr, dtype=np.float32)
    rank = len(onnx_dims)
    if rank and a.ndim == rank - 1:
        a = a[None]
    if rank and a.ndim != rank:
        raise InputError(f"{source}: array of shape {tuple(arr.shape)} does not fit the ONNX input {_fmt(onnx_dims)}")
    if a.shape[0] != 1:
        raise InputError(f"{source}: batch {a.shape[0]}; only batch 1 can be compared (ncnn has no batch axis)")
    for k, (want, got) in enumerate(zip(onnx_dims, a.shape, strict=True)):
        if want is not None and k > 0 and want != got:
            raise InputError(f"{source}: array of shape {tuple(arr.shape)} does not fit the ONNX input "
                             f"{_fmt(onnx_dims)} (dim {k} must be {want})")
    if shape is not None and tuple(a.shape[1:]) != tuple(shape[-(a.ndim - 1):]):
        raise InputError(f"{source}: array shape {tuple(a.shape[1:])} disagrees with --shape {','.join(map(str, shape))}")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{source}: the array has NaN or infinite values")
    return PreparedInput(a, source, "array")


def _from_image(path: str, onnx_dims: list[int | None], shape: tuple[int, ...] | None) -> PreparedInput:
    from ncnnpass.passes.measure.rec_preprocess import ImageReadError, read_image, resize_norm_img

    if len(onnx_dims) != 4 or onnx_dims[1] not in (None, 3):
        raise InputError(f"{path}: image inputs need a 3-channel NCHW model; this ONNX input is {_fmt(onnx_dims)}")
    dims, note = resolve_shape(onnx_dims, None, shape)
    _, c, h, w = dims
    try:
        img = read_image(path)
    except ImageReadError as exc:
        raise InputError(f"{path}: {exc}") from None
    canvas, resized_w = resize_norm_img(img, (c, h, w))
    note = f"{note}; PaddleOCR rec preprocessing: resized to {resized_w}×{h}, padded right to {w}"
    return PreparedInput(canvas[None], f"image: {path}", note, content_width=int(resized_w))
