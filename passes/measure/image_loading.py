"""Image decoding for recognition runs: one sample to a normalised CHW array (:func:`load_sample`), and
many samples decoded ahead on worker threads, in order (:func:`ordered_loads`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from .label_files import LabelLine
from .rec_preprocess import ImageReadError, read_image, resize_norm_img

__all__ = ["load_sample", "ordered_loads"]

T = TypeVar("T")


def load_sample(sample: LabelLine, image_shape: tuple[int, int, int], eval_mode: bool
                ) -> tuple[np.ndarray | None, str | None]:
    """``(CHW float32 array, None)``, or ``(None, reason)`` when the image cannot be read or resized."""
    try:
        img = read_image(sample.path)
    except ImageReadError as exc:
        return None, str(exc)
    try:
        chw, _ = resize_norm_img(img, image_shape, eval_mode)
    except Exception as exc:  # cv2 refusing a pathological size
        return None, f"cannot resize: {exc}"
    return chw, None


def ordered_loads(samples: Sequence[T], load: Callable[[T], Any], workers: int, window: int) -> Iterator[Any]:
    """``load`` over ``samples`` in order, ``window`` items ahead on ``workers`` threads."""
    if workers <= 0:
        for s in samples:
            yield load(s)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ncnnpass-load") as pool:
        pending = []
        it = iter(samples)
        for s in it:
            pending.append(pool.submit(load, s))
            if len(pending) >= window:
                break
        head = 0
        while head < len(pending):
            yield pending[head].result()
            pending[head] = None  # free the array
            head += 1
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(load, nxt))
