"""The built-in data when the user gives none: text lines (rec, cls) and document pages (det, end to end).

Every sample is drawn from its own generator seeded by ``(seed, index)``, so sample ``i`` is the same
whatever ``n`` is, on every machine, and its provenance names the seed, the index and the parameters:
script, font, size, colours and the degradation (rotation, perspective, blur, resolution loss, noise, JPEG).

- Lines (:func:`builtin_lines`): 1 to ~40 characters of real Chinese or English words (:mod:`.texts`),
  one of several fonts at 18-44 px, light background of varying tint and contrast, a tight crop (like a
  detector's box), degraded. ``orientation_share`` of them turned by 180 degrees (labelled for cls).
- Pages (:func:`builtin_pages`): 560-1000 x 560-1100 pixels of paper with rows of text (sometimes two
  columns) in 16-40 px, the whole page slightly rotated or tilted and degraded; the ground truth is each
  text's box (moved with the page) and its text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ncnnpass.ir.errors import NcnnpassError

from ..samples import DataSet, Provenance, Sample, TextBox
from .fonts import FontFace, fonts_for, load_font
from .render import Degradation, render_text
from .texts import TextSource, line_length

__all__ = ["builtin_lines", "builtin_pages", "builtin_data", "builtin_key", "builtin_indexed", "DEFAULT_LINES",
           "DEFAULT_PAGES"]

DEFAULT_LINES = 200
DEFAULT_PAGES = 30
CHINESE_SHARE = 0.6


def builtin_key(form: str, seed: int, index: int) -> str:
    """The provenance key of built-in sample ``index`` (``form``: ``builtin-lines`` or ``builtin-pages``): what
    the calibration/held-out split hashes, known before the sample is drawn."""
    return f"{form}:{seed}:{index}"


def _face(rng: np.random.Generator, zh: bool) -> FontFace:
    faces = fonts_for("cjk") if zh or rng.random() < 0.2 else fonts_for("latin")
    return faces[int(rng.integers(len(faces)))]


def _colours(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    base = int(rng.integers(150, 256))
    bg = tuple(int(np.clip(base + rng.integers(-12, 13), 0, 255)) for _ in range(3))
    ink = int(rng.integers(0, min(110, base - 60)))
    fg = tuple(int(np.clip(ink + rng.integers(-10, 11), 0, 255)) for _ in range(3))
    return fg, bg  # type: ignore[return-value]


def _line(seed: int, index: int, source: TextSource, chinese_share: float, orientation_share: float) -> Sample:
    rng = np.random.default_rng([seed, index, 1])
    zh = bool(rng.random() < chinese_share)
    length = line_length(rng)
    text = source.chinese(rng, length) if zh else source.latin(rng, length)
    face = _face(rng, zh)
    size = int(rng.integers(18, 45))
    fg, bg = _colours(rng)
    pad = tuple(int(v) for v in rng.integers(2, 12, 4))
    deg = Degradation.draw(rng)
    img, _ = deg.apply(render_text(text, face, size, fg[::-1], bg[::-1], pad))
    orientation = None
    if orientation_share > 0:
        orientation = "180" if rng.random() < orientation_share else "0"
        if orientation == "180":
            img = np.ascontiguousarray(img[::-1, ::-1])
    params = (("script", "zh" if zh else "latin"), ("font", face.name), ("size", size), ("chars", len(text)),
              ("fg", fg), ("bg", bg), *deg.params().items()) + ((("orientation", orientation),) if orientation else ())
    prov = Provenance("builtin-lines", "builtin-lines", seed=seed, index=index, params=params,
                      key=builtin_key("builtin-lines", seed, index))
    return Sample(prov, pixels=img, text=text, orientation=orientation)


def builtin_lines(n: int = DEFAULT_LINES, seed: int = 0, *, dictionary: Sequence[str] | None = None,
                  chinese_share: float = CHINESE_SHARE, orientation_share: float = 0.0) -> DataSet:
    """``n`` seeded text lines (see the module docstring); ``dictionary`` restricts the characters."""
    if n < 1:
        raise NcnnpassError(f"built-in lines: need at least one (got {n})")
    source = TextSource(dictionary)
    return DataSet([_line(seed, i, source, chinese_share, orientation_share) for i in range(n)],
                   "builtin-lines", f"built-in lines, seed {seed}")


def _fit(draw, text: str, font, x: int, y: int, right: int) -> tuple[str, tuple[int, int, int, int]]:
    box = draw.textbbox((x, y), text, font=font)
    while len(text) > 1 and box[2] > right:
        text = text[:-1].rstrip()
        box = draw.textbbox((x, y), text, font=font)
    return text, box


def _page(seed: int, index: int, source: TextSource, chinese_share: float) -> Sample:
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([seed, index, 2])
    w, h = int(rng.integers(560, 1001)), int(rng.integers(560, 1101))
    page_zh = bool(rng.random() < chinese_share)
    paper = tuple(int(v) for v in np.clip(int(rng.integers(205, 256)) + rng.integers(-10, 11, 3), 0, 255))
    canvas = Image.new("RGB", (w, h), paper)
    draw = ImageDraw.Draw(canvas)
    margin = int(rng.integers(20, 61))
    y = margin
    boxes: list[tuple[list[list[float]], str]] = []
    while True:
        size = int(rng.integers(16, 41))
        if y + 1.3 * size > h - margin:
            break
        x = margin + int(rng.integers(0, max(1, w // 5)))
        columns = 2 if rng.random() < 0.25 else 1
        col_w = (w - margin - x) // columns
        for c in range(columns):
            zh = page_zh if rng.random() < 0.85 else not page_zh
            per_char = size * (1.0 if zh else 0.55)
            room = max(1, int((col_w - 10) / per_char))
            length = min(line_length(rng), room)
            text = source.chinese(rng, length) if zh else source.latin(rng, length)
            face = _face(rng, zh)
            font = load_font(face, size)
            ink = tuple(int(v) for v in rng.integers(0, 90, 3))
            cx = x + c * col_w
            text, (left, top, right, bottom) = _fit(draw, text, font, cx, y, cx + col_w - 10)
            if right <= left or bottom <= top:
                continue
            draw.text((cx, y), text, font=font, fill=ink)
            boxes.append(([[left, top], [right, top], [right, bottom], [left, bottom]], text))
        y += int(size * rng.uniform(1.4, 2.6))
    img = np.ascontiguousarray(np.asarray(canvas)[:, :, ::-1])
    deg = Degradation.draw(rng, max_angle=3.0)
    pts = np.array([p for b, _ in boxes for p in b], dtype=np.float32).reshape(-1, 2)
    img, moved = deg.apply(img, pts if len(pts) else None, border=paper[::-1])
    moved = moved if moved is not None else pts
    truth = tuple(TextBox(moved[4 * i:4 * i + 4].astype(np.float32), t) for i, (_, t) in enumerate(boxes))
    params = (("script", "zh" if page_zh else "latin"), ("size", f"{w}x{h}"), ("boxes", len(truth)),
              *deg.params().items())
    prov = Provenance("builtin-pages", "builtin-pages", seed=seed, index=index, params=params,
                      key=builtin_key("builtin-pages", seed, index))
    return Sample(prov, pixels=img, boxes=truth)


def builtin_pages(n: int = DEFAULT_PAGES, seed: int = 0, *, dictionary: Sequence[str] | None = None,
                  chinese_share: float = CHINESE_SHARE) -> DataSet:
    """``n`` seeded document pages with their text boxes (see the module docstring)."""
    if n < 1:
        raise NcnnpassError(f"built-in pages: need at least one (got {n})")
    source = TextSource(dictionary)
    return DataSet([_page(seed, i, source, chinese_share) for i in range(n)], "builtin-pages",
                   f"built-in pages, seed {seed}")


def builtin_indexed(kind: str, indices: Sequence[int], seed: int = 0, *,
                    dictionary: Sequence[str] | None = None) -> DataSet:
    """The built-in samples ``indices`` of :func:`builtin_data` (each the same as in any ``builtin_data(kind, n,
    seed)`` that reaches it): lets a caller draw only the samples of one part of the split."""
    if kind not in ("rec", "cls", "det"):
        raise NcnnpassError(f"no built-in data for model kind {kind!r} (rec, cls or det)")
    source = TextSource(dictionary)
    if kind == "det":
        return DataSet([_page(seed, i, source, CHINESE_SHARE) for i in indices], "builtin-pages",
                       f"built-in pages, seed {seed}")
    share = 0.5 if kind == "cls" else 0.0
    return DataSet([_line(seed, i, source, CHINESE_SHARE, share) for i in indices], "builtin-lines",
                   f"built-in lines, seed {seed}")


def builtin_data(kind: str, n: int | None = None, seed: int = 0, *,
                 dictionary: Sequence[str] | None = None) -> DataSet:
    """Lines for ``rec`` (labelled text) and ``cls`` (half of them turned, labelled), pages for ``det``."""
    if kind == "det":
        return builtin_pages(n or DEFAULT_PAGES, seed, dictionary=dictionary)
    if kind in ("rec", "cls"):
        return builtin_lines(n or DEFAULT_LINES, seed, dictionary=dictionary,
                             orientation_share=0.5 if kind == "cls" else 0.0)
    raise NcnnpassError(f"no built-in data for model kind {kind!r} (rec, cls or det)")
