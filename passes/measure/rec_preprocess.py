"""PaddleOCR's recognition preprocessing (``DecodeImage`` + ``RecResizeImg``), reproduced with OpenCV.

- Decoding: ``cv2.imdecode(bytes, IMREAD_COLOR)`` exactly as PaddleOCR's ``DecodeImage(img_mode=BGR)``:
  3-channel BGR uint8 (grey images are expanded, alpha is dropped, EXIF orientation is applied).
- Resizing (``resize_norm_img``, the default ``RecResizeImg``): keep the aspect ratio at the target
  height, ``resized_w = min(imgW, ceil(imgH * w / h))`` (wider images are squeezed to ``imgW``),
  bilinear ``cv2.resize``; float32; HWC -> CHW; ``/255``, ``-0.5``, ``/0.5`` -> [-1, 1]; pasted at the
  left of a zero canvas ``[C, imgH, imgW]``. The right padding is 0 *after* normalisation (mid grey).
- ``eval_mode`` (``RecResizeImg(eval_mode=True)``, ``resize_norm_img_chinese``): the canvas widens to
  ``int(imgH * max(imgW / imgH, w / h))`` so long lines keep their aspect ratio.
- Inference (``tools/infer/predict_rec.py``, :func:`rec_tensor`, :func:`rec_batches`): lines sorted by
  aspect ratio, batched; each batch's canvas is ``int(imgH * max_wh_ratio)`` wide with ``max_wh_ratio`` the
  largest of ``imgW / imgH`` and the batch's ``w / h`` (a batch of one = ``eval_mode``); a model whose
  input width is fixed gets that width instead.

The arithmetic follows PaddleOCR's operation order in float32, so the tensors are bit-identical.
"""

from __future__ import annotations

import math
import os

import cv2
import numpy as np

from ncnnpass.ir.errors import NcnnpassError

__all__ = ["ImageReadError", "parse_image_shape", "decode_image", "read_image", "canvas_width",
           "resize_norm_img", "rec_tensor", "rec_batches"]


class ImageReadError(NcnnpassError):
    """An image file that is missing or cannot be decoded."""


def parse_image_shape(text: str | tuple[int, int, int] | list[int]) -> tuple[int, int, int]:
    """``"3,48,320"`` -> ``(3, 48, 320)``; only 3-channel (BGR) shapes are supported."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.replace("x", ",").split(",")]
        try:
            dims = tuple(int(p) for p in parts)
        except ValueError:
            raise NcnnpassError(f"bad image shape {text!r}: expected C,H,W such as 3,48,320") from None
    else:
        dims = tuple(int(d) for d in text)
    if len(dims) != 3 or min(dims) <= 0:
        raise NcnnpassError(f"bad image shape {text!r}: expected three positive numbers C,H,W")
    if dims[0] != 3:
        raise NcnnpassError(f"image shape {text!r}: only 3-channel (BGR) recognition models are supported")
    return dims  # type: ignore[return-value]


def decode_image(data: bytes) -> np.ndarray | None:
    """Decode encoded image bytes to BGR uint8 HxWx3 like PaddleOCR, or ``None`` if undecodable."""
    if not data:
        return None
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        return None
    return img


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read and decode an image file (bytes first, so non-ASCII paths work everywhere)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ImageReadError("missing") from None
    except OSError as exc:
        raise ImageReadError(exc.strerror or str(exc)) from None
    img = decode_image(data)
    if img is None:
        raise ImageReadError("not a decodable image" if data else "empty file")
    return img


def _resized_width(h: int, w: int, img_h: int, canvas_w: int) -> int:
    ratio = w / float(h)
    wanted = math.ceil(img_h * ratio)
    return canvas_w if wanted > canvas_w else int(wanted)


def canvas_width(h: int, w: int, image_shape: tuple[int, int, int], eval_mode: bool = False) -> int:
    """Width of the model input for an ``h`` x ``w`` image."""
    _, img_h, img_w = image_shape
    if not eval_mode:
        return img_w
    return int(img_h * max(img_w * 1.0 / img_h, w * 1.0 / h))


def resize_norm_img(img: np.ndarray, image_shape: tuple[int, int, int],
                    eval_mode: bool = False) -> tuple[np.ndarray, int]:
    """PaddleOCR ``RecResizeImg``: return the normalised CHW float32 canvas and the resized width."""
    img_c, img_h, _ = image_shape
    h, w = img.shape[:2]
    width = canvas_width(h, w, image_shape, eval_mode)
    resized_w = _resized_width(h, w, img_h, width)
    resized = cv2.resize(img, (resized_w, img_h)).astype("float32")
    resized = resized.transpose((2, 0, 1)) / 255
    resized -= 0.5
    resized /= 0.5
    canvas = np.zeros((img_c, img_h, width), dtype=np.float32)
    canvas[:, :, 0:resized_w] = resized
    return canvas, resized_w


def rec_tensor(img: np.ndarray, image_shape: tuple[int, int, int], max_wh_ratio: float | None = None,
               fixed_width: int | None = None) -> tuple[np.ndarray, int]:
    """``predict_rec``'s ``resize_norm_img``: the ``C x H x W`` canvas for one line and the resized width.
    ``max_wh_ratio``: the batch's (default: this line's, at least ``imgW / imgH``); ``fixed_width``: the
    model's static input width, which overrides it (PaddleOCR's ONNX path)."""
    img_c, img_h, img_w = image_shape
    h, w = img.shape[:2]
    if max_wh_ratio is None:
        max_wh_ratio = max(img_w / img_h, w * 1.0 / h)
    width = int(fixed_width) if fixed_width else int(img_h * max_wh_ratio)
    resized_w = _resized_width(h, w, img_h, width)
    resized = cv2.resize(img, (resized_w, img_h)).astype("float32")
    resized = resized.transpose((2, 0, 1)) / 255
    resized -= 0.5
    resized /= 0.5
    canvas = np.zeros((img_c, img_h, width), dtype=np.float32)
    canvas[:, :, 0:resized_w] = resized
    return canvas, resized_w


def rec_batches(images: list[np.ndarray], image_shape: tuple[int, int, int], batch_size: int = 6,
                fixed_width: int | None = None) -> list[tuple[list[int], np.ndarray]]:
    """``predict_rec``'s batching: ``(indices into images, N x C x H x W)`` per batch, lines sorted by
    aspect ratio, each batch padded to its widest line (``rec_batch_num`` is 6 in PaddleOCR)."""
    ratios = np.array([im.shape[1] / float(im.shape[0]) for im in images])
    order = np.argsort(ratios)
    _, img_h, img_w = image_shape
    out = []
    for start in range(0, len(images), max(1, batch_size)):
        idx = [int(i) for i in order[start:start + max(1, batch_size)]]
        ratio = max([img_w / img_h] + [float(ratios[i]) for i in idx])
        out.append((idx, np.stack([rec_tensor(images[i], image_shape, ratio, fixed_width)[0] for i in idx])))
    return out
