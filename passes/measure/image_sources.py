"""``--images PATH``: an image folder, one image, a PaddleOCR rec label file or a det label file.

- A folder: its image files (PaddleOCR's extensions, not recursive, sorted by name), unlabelled.
- A rec label file (``SimpleDataSet``): ``image_path<TAB>text`` per line.
- A det label file (PPOCRLabel / ``SimpleDataSet`` for det): ``image_path<TAB>[{"transcription": ...,
  "points": [[x, y], ...]}, ...]`` per line.

Which of the two a label file is comes from its lines: det when most of the first lines with a tab carry a
JSON list of objects with ``points``. Image paths are relative to ``data_dir`` when given, else to the
label file's folder, else to its parent (PPOCRLabel writes ``Label.txt`` inside the image folder with
paths that start with that folder's name). Unusable lines and images are skipped and counted with the first
reasons (:class:`.samples.DataSet`); no usable sample at all is an error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ncnnpass.ir.errors import NcnnpassError

from .rec_preprocess import ImageReadError, read_image
from .samples import DataSet, Provenance, Sample, TextBox

__all__ = ["IMAGE_EXTENSIONS", "ImagesError", "load_images", "label_file_form"]

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".rgb"}
_SNIFF_LINES = 50


class ImagesError(NcnnpassError):
    """``--images`` names nothing usable."""


def _check_image(path: str) -> str | None:
    try:
        read_image(path)
    except ImageReadError as exc:
        return str(exc)
    return None


def _folder(root: Path) -> DataSet:
    data = DataSet([], "folder", str(root))
    files = [root] if root.is_file() else sorted(p for p in root.iterdir()
                                                 if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    for p in files:
        problem = _check_image(str(p))
        if problem:
            data.skip(f"{p}: {problem}")
            continue
        name = p.name if root.is_dir() else str(p)
        data.samples.append(Sample(Provenance("folder", str(p), key=f"image:{name}"), path=str(p)))
    return data


def _det_boxes(text: str) -> tuple[TextBox, ...] | str:
    """The boxes of a det label, or why it is not one."""
    try:
        items = json.loads(text)
    except ValueError as exc:
        return f"det label is not valid JSON ({exc})"
    if not isinstance(items, list):
        return "det label is not a JSON list"
    import numpy as np

    boxes = []
    for i, item in enumerate(items, start=1):
        if not isinstance(item, dict) or "points" not in item:
            return f"det label item {i} has no \"points\""
        pts = item["points"]
        ok = (isinstance(pts, list) and len(pts) >= 3 and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                        for v in p) for p in pts))
        if not ok:
            return f"det label item {i}: \"points\" must be a list of at least 3 [x, y] numbers"
        text_i = item.get("transcription", "")
        if not isinstance(text_i, str):
            return f"det label item {i}: \"transcription\" is not a string"
        boxes.append(TextBox(np.asarray(pts, dtype=np.float32), text_i))
    return tuple(boxes)


def _looks_det(label: str) -> bool:
    s = label.lstrip()
    if not s.startswith("["):
        return False
    try:
        items = json.loads(s)
    except ValueError:
        return False
    return isinstance(items, list) and all(isinstance(i, dict) and "points" in i for i in items)


def label_file_form(lines: list[str]) -> str:
    """``det-labels`` or ``rec-labels`` by the first lines that have a tab."""
    labelled = [ln.split("\t")[1] for ln in lines if "\t" in ln][:_SNIFF_LINES]
    det = sum(_looks_det(lab) for lab in labelled)
    return "det-labels" if labelled and det * 2 > len(labelled) else "rec-labels"


def _resolve(rel: str, roots: list[Path]) -> Path | None:
    for root in roots:
        p = root / rel
        if p.is_file():
            return p
    return None


def _label_file(path: Path, data_dir: str | os.PathLike | None) -> DataSet:
    raw = path.read_bytes()
    texts: list[tuple[int, str | None]] = []
    for lineno, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            texts.append((lineno, chunk.decode("utf-8").rstrip("\r")))
        except UnicodeDecodeError:
            texts.append((lineno, None))
    form = label_file_form([t for _, t in texts if t])
    data = DataSet([], form, str(path))
    roots = [Path(data_dir)] if data_dir is not None else [path.parent, path.parent.parent]
    if data_dir is not None and not Path(data_dir).is_dir():
        raise ImagesError(f"data directory does not exist: {data_dir}")
    for lineno, line in texts:
        where = f"{path}:{lineno}"
        if line is None:
            data.skip(f"{where}: not UTF-8")
            continue
        if not line.strip():
            continue
        if "\t" not in line:
            data.skip(f"{where}: no tab between image path and label")
            continue
        rel, label = line.split("\t")[:2]
        if not rel:
            data.skip(f"{where}: empty image path")
            continue
        boxes = None
        if form == "det-labels":
            parsed = _det_boxes(label)
            if isinstance(parsed, str):
                data.skip(f"{where}: {parsed}")
                continue
            boxes = parsed
        elif not label:
            data.skip(f"{where}: empty label")
            continue
        image = _resolve(rel, roots)
        if image is None:
            data.skip(f"{where}: image {rel} not found (looked in {', '.join(map(str, roots))})")
            continue
        problem = _check_image(str(image))
        if problem:
            data.skip(f"{where}: {rel}: {problem}")
            continue
        prov = Provenance(form, str(path), line=lineno, image=rel, key=f"{form}:{rel}\t{label}")
        if boxes is None:
            data.samples.append(Sample(prov, path=str(image), text=label))
        else:
            data.samples.append(Sample(prov, path=str(image), boxes=boxes))
    return data


def load_images(path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> DataSet:
    """The samples ``path`` names (see the module docstring); raises :class:`ImagesError` when nothing
    usable remains, naming the first reasons."""
    p = Path(path)
    if not p.exists():
        raise ImagesError(f"--images {path}: no such file or directory")
    if p.is_dir() or p.suffix.lower() in IMAGE_EXTENSIONS:
        data = _folder(p)
    else:
        try:
            data = _label_file(p, data_dir)
        except OSError as exc:
            raise ImagesError(f"--images {path}: cannot read: {exc.strerror or exc}") from None
    if not data.samples:
        what = "image files" if data.form == "folder" else "usable lines"
        detail = f" ({data.skipped} skipped: {'; '.join(data.reasons)})" if data.skipped else ""
        raise ImagesError(f"--images {path}: no {what}{detail}")
    return data
