"""Samples to model inputs per kind, exactly as PaddleOCR's inference preprocesses them.

- ``rec``: :func:`.rec_preprocess.rec_tensor`, one line per input: a width-dynamic model gets each line
  at its own width (``predict_rec`` with a batch of one: ``int(H * max(W0 / H, w / h))``), a fixed-width
  model its width. Pages (samples with boxes) contribute their labelled lines, cut as PaddleOCR does
  (:mod:`.crops`), with the transcription as label; ``###`` regions are left out.
- ``cls``: the same lines at 3 x 48 x 192 (``predict_cls``: aspect kept up to 192, [-1, 1], zero pad).
- ``det``: :func:`.det_preprocess.det_tensor` per image.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace

from ncnnpass.ir.errors import NcnnpassError

from .crops import rotate_crop
from .det_preprocess import DetResize, det_resize_for, det_tensor
from .model_info import ModelInfo
from .model_input import ModelInput
from .rec_preprocess import ImageReadError, rec_tensor
from .samples import DataSet, Provenance, Sample

__all__ = ["prepare_inputs", "prepare_for_model", "line_samples", "CLS_SHAPE", "REC_SHAPE"]

REC_SHAPE = (3, 48, 320)
CLS_SHAPE = (3, 48, 192)


def line_samples(samples: Iterable[Sample], data: DataSet | None = None) -> list[Sample]:
    """Each line sample as it is, each page's labelled boxes as line samples (crops held in memory)."""
    out = []
    for s in samples:
        if not s.boxes:
            if s.boxes is None:
                out.append(s)
            continue
        try:
            page = s.image()
        except ImageReadError as exc:
            if data is not None:
                data.skip(f"{s.provenance}: {exc}")
            continue
        for i, box in enumerate(s.boxes):
            if box.ignore:
                continue
            prov = Provenance("crop", str(s.provenance), index=i, key=f"{s.provenance.key}#box{i}",
                              params=s.provenance.params)
            out.append(Sample(prov, pixels=rotate_crop(page, box.points), text=box.text))
    return out


def prepare_inputs(samples: Iterable[Sample], kind: str, *, image_shape: tuple[int, int, int] | None = None,
                   dynamic_width: bool = True, det_resize: DetResize | None = None,
                   data: DataSet | None = None) -> list[ModelInput]:
    """Model inputs for ``kind`` (``rec``, ``cls``, ``det``); samples whose image cannot be read are
    skipped and counted in ``data`` when given."""
    if kind not in ("rec", "cls", "det"):
        raise NcnnpassError(f"cannot prepare inputs for model kind {kind!r} (rec, cls or det)")
    shape = tuple(image_shape) if image_shape else (CLS_SHAPE if kind == "cls" else REC_SHAPE)
    items = list(samples) if kind == "det" else line_samples(samples, data)
    out = []
    for s in items:
        try:
            img = s.image()
        except ImageReadError as exc:
            if data is not None:
                data.skip(f"{s.provenance}: {exc}")
            continue
        hw = (int(img.shape[0]), int(img.shape[1]))
        if kind == "det":
            x, ratio = det_tensor(img, det_resize or DetResize())
            out.append(ModelInput(s, x, hw, ratio))
            continue
        fixed = None if (kind == "rec" and dynamic_width) else shape[2]
        x, content = rec_tensor(img, shape, fixed_width=fixed)  # type: ignore[arg-type]
        out.append(ModelInput(replace(s), x[None], hw, content_width=content))
    return out


def prepare_for_model(samples: Iterable[Sample], info: ModelInfo, model_dir: str | os.PathLike | None = None,
                      data: DataSet | None = None) -> list[ModelInput]:
    """:func:`prepare_inputs` with what :func:`.model_info.read_model_info` found: the kind, the input
    shape (rec: the model's height, e.g. 32 for v2), whether the width is dynamic, and the detector's
    resize from ``model_dir``'s ``inference.yml`` (else PaddleOCR's default)."""
    if info.kind is None:
        raise NcnnpassError("cannot tell whether the model is rec, det or cls: give the kind")
    return prepare_inputs(samples, info.kind, image_shape=None if info.kind == "det" else info.input_shape,
                          dynamic_width=info.dynamic[1], det_resize=det_resize_for(model_dir), data=data)
