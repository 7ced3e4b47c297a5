"""Samples to measure on: an image (a text line or a page), its label if it has one, and where it came from.

- :class:`Provenance`: the file and line of a label file, the image file of a folder, or the generator,
  its seed and parameters; :attr:`Provenance.key` is the stable identity the calibration/held-out split
  hashes (it names the image and its label, never a line number, so editing a label file elsewhere does
  not move a sample to the other part).
- :class:`TextBox`: one ground-truth text region of a page (polygon + transcription; ``###`` = ignore, as
  in PaddleOCR's det labels).
- :class:`Sample`: the image (decoded on demand from ``path``, or held in memory for generated data),
  ``text`` (a line's label) or ``boxes`` (a page's labels).
- :class:`DataSet`: samples plus what was skipped and why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .rec_preprocess import read_image

__all__ = ["Provenance", "TextBox", "Sample", "DataSet", "MAX_REASONS"]

MAX_REASONS = 5  # first reasons kept for the skip report


@dataclass(frozen=True)
class Provenance:
    """Where a sample comes from (see the module docstring)."""

    origin: str  #: ``folder``, ``rec-labels``, ``det-labels``, ``builtin-lines``, ``builtin-pages``, ``crop``
    source: str  #: the image file, the label file, or the generator's name
    line: int | None = None  #: line in the label file
    image: str | None = None  #: image path as the label file writes it
    seed: int | None = None  #: generator seed
    index: int | None = None  #: generator index, or the box index of a crop
    params: tuple[tuple[str, Any], ...] = ()  #: generator parameters
    key: str = ""  #: stable identity (hashed by the split)

    def __str__(self) -> str:
        if self.origin in ("rec-labels", "det-labels"):
            return f"{self.source}:{self.line} ({self.image})"
        if self.seed is not None:
            extra = ", ".join(f"{k}={v}" for k, v in self.params[:4])
            return f"{self.source} seed {self.seed} #{self.index}" + (f" ({extra})" if extra else "")
        if self.origin == "crop":
            return f"{self.source} box {self.index}"
        return self.source

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"origin": self.origin, "source": self.source}
        for name in ("line", "image", "seed", "index"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.params:
            out["params"] = {k: v for k, v in self.params}
        return out


@dataclass(frozen=True)
class TextBox:
    """A ground-truth text region: polygon points (N x 2, float32, image pixels) and its transcription."""

    points: np.ndarray
    text: str

    @property
    def ignore(self) -> bool:
        """PaddleOCR's "don't care" regions (``###`` and ``*``) count neither as hit nor as miss."""
        return self.text in ("###", "*")


@dataclass
class Sample:
    """One image to measure on (see the module docstring)."""

    provenance: Provenance
    path: str | None = None
    pixels: np.ndarray | None = None  #: BGR uint8, for generated samples
    text: str | None = None
    boxes: tuple[TextBox, ...] | None = None
    orientation: str | None = None  #: a line's direction label for classifiers (``0`` or ``180``)

    def image(self) -> np.ndarray:
        """BGR uint8 H x W x 3, decoded as PaddleOCR's ``DecodeImage`` does (raises ``ImageReadError``)."""
        if self.pixels is not None:
            return self.pixels
        if self.path is None:
            raise ValueError(f"{self.provenance}: sample has neither pixels nor a path")
        return read_image(self.path)


@dataclass
class DataSet:
    """Samples of one source; ``skipped`` inputs that could not be used and the first reasons."""

    samples: list[Sample]
    form: str  #: ``folder``, ``rec-labels``, ``det-labels``, ``builtin-lines``, ``builtin-pages``
    source: str
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> None:
        self.skipped += 1
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(reason)

    @property
    def labelled(self) -> bool:
        return any(s.text is not None or s.boxes is not None for s in self.samples)

    def describe(self) -> str:
        """One line: how many samples of what, from where, and what was skipped."""
        what = "pages" if self.form in ("det-labels", "builtin-pages") else (
            "lines" if self.form in ("rec-labels", "builtin-lines") else "images")
        text = f"{len(self.samples)} {what} from {os.fspath(self.source)} ({self.form})"
        if self.skipped:
            text += f"; {self.skipped} skipped: " + "; ".join(self.reasons)
            if self.skipped > len(self.reasons):
                text += "; ..."
        return text
