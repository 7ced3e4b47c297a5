"""Annotated pictures of the pages where ``ncnnpass ocr``'s two sides differ: what an app developer looks at.

Side by side, the page as the reference read it and as the candidate read it: every kept line's box,
numbered in reading order, green when both sides agree on it, red when its string differs, orange for a
line only one side has. Below, one row per difference with both strings and confidences. Text is drawn
with the CJK font the built-in data uses (WenQuanYi Micro Hei and friends, :mod:`ncnnpass.passes.measure.synth.fonts`),
so Chinese strings are legible; without one Pillow's own font stands in.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np

from ncnnpass.ir.fileio import atomic_write

from .ocr import OcrReport, PageDiff

__all__ = ["annotate", "write_annotations"]

GREEN, RED, ORANGE, GREY = (0, 150, 0), (220, 0, 0), (230, 130, 0), (90, 90, 90)
MAX_PANEL_HEIGHT = 1400
FONT_SIZE = 18


def _font(size: int):
    from PIL import ImageFont

    from ncnnpass.passes.measure.synth.fonts import FontsMissing, fonts_for, load_font

    try:
        return load_font(fonts_for("cjk")[0], size)
    except FontsMissing:
        return ImageFont.load_default(size)


def _colours(diff: PageDiff) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    ref = [GREEN] * len(diff.reference.kept)
    cand = [GREEN] * len(diff.candidate.kept)
    for i, j in diff.changed:
        ref[i] = cand[j] = RED
    for i in diff.missing:
        ref[i] = ORANGE
    for j in diff.extra:
        cand[j] = ORANGE
    return ref, cand


def _rows(diff: PageDiff, ref_label: str, cand_label: str) -> list[tuple[str, tuple[int, int, int]]]:
    ref, cand = diff.reference.kept, diff.candidate.kept
    out = []
    for i, j in diff.changed:
        out.append((f"#{i + 1}/#{j + 1}  {ref_label}: {ref[i].text!r} ({ref[i].score:.3f})    {cand_label}: "
                    f"{cand[j].text!r} ({cand[j].score:.3f})", RED))
    for i in diff.missing:
        out.append((f"#{i + 1}  {ref_label}: {ref[i].text!r} ({ref[i].score:.3f})    {cand_label}: no line here", ORANGE))
    for j in diff.extra:
        out.append((f"#{j + 1}  {ref_label}: no line here    {cand_label}: {cand[j].text!r} ({cand[j].score:.3f})",
                    ORANGE))
    if diff.candidate.error:
        out.append((f"{cand_label} failed: {diff.candidate.error}", RED))
    return out


def annotate(diff: PageDiff, ref_label: str = "onnxruntime", cand_label: str = "ncnn") -> np.ndarray:
    """The annotated picture of one page (BGR uint8), see the module docstring."""
    from PIL import Image, ImageDraw

    page = diff.sample.image()
    scale = min(1.0, MAX_PANEL_HEIGHT / page.shape[0])
    h, w = int(round(page.shape[0] * scale)), int(round(page.shape[1] * scale))
    base = cv2.resize(page, (w, h)) if scale < 1.0 else page
    font, small = _font(FONT_SIZE), _font(max(10, FONT_SIZE - 4))
    rows = _rows(diff, ref_label, cand_label)
    gap, head, line_h = 16, FONT_SIZE + 16, FONT_SIZE + 8
    canvas = Image.new("RGB", (2 * w + gap, head + h + 12 + line_h * max(1, len(rows))), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    ref_c, cand_c = _colours(diff)
    for k, (label, lines, colours) in enumerate(((ref_label, diff.reference.kept, ref_c),
                                                 (cand_label, diff.candidate.kept, cand_c))):
        x0 = k * (w + gap)
        draw.text((x0 + 4, 6), f"{label}: {len(lines)} lines", font=font, fill=GREY)
        canvas.paste(Image.fromarray(np.ascontiguousarray(base[:, :, ::-1])), (x0, head))
        for n, (line, colour) in enumerate(zip(lines, colours, strict=True), start=1):
            pts = [(x0 + float(px) * scale, head + float(py) * scale) for px, py in line.box]
            draw.polygon(pts, outline=colour, width=2 if colour == GREEN else 3)
            draw.text((pts[0][0], max(head, pts[0][1] - FONT_SIZE + 2)), str(n), font=small, fill=colour)
    y = head + h + 8
    if not rows:
        draw.text((4, y), "no difference", font=font, fill=GREEN)
    for text, colour in rows:
        draw.text((4, y), text, font=font, fill=colour)
        y += line_h
    return np.ascontiguousarray(np.asarray(canvas)[:, :, ::-1])


def _name(diff: PageDiff, index: int) -> str:
    p = diff.sample.provenance
    stem = Path(p.image or p.source).stem if p.origin != "builtin-pages" else f"builtin-page-{p.index}"
    return f"{index:03d}-{re.sub(r'[^A-Za-z0-9._-]+', '_', stem)[:60]}.png"


def write_annotations(report: OcrReport, outdir: str | os.PathLike, only_differing: bool = True) -> list[Path]:
    """One PNG per page (those that differ, unless ``only_differing`` is False) in ``outdir``."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, diff in enumerate(report.pages):
        if only_differing and not diff.differs:
            continue
        ok, png = cv2.imencode(".png", annotate(diff, report.reference, report.candidate))
        if not ok:
            continue
        path = out / _name(diff, i)
        atomic_write(path, png.tobytes())
        written.append(path)
    return written
