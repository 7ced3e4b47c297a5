"""PaddleOCR's CTC character set, label encoding and greedy decoding (``CTCLabelDecode`` semantics).

- Character list: the dictionary file's lines (UTF-8, line ends stripped, empty lines kept), then ``" "``
  when ``use_space_char``, with ``"blank"`` prepended: index 0 is the CTC blank, so a model needs
  ``len(lines) + 1 (+ 1)`` classes.
- Label encoding (``CTCLabelEncode``): characters that are not in the dictionary are dropped; a label
  with no dictionary character left is unusable.
- Greedy decoding: per-frame argmax, drop a frame equal to the previous frame, then drop blanks, so
  ``a, blank, a`` gives ``aa`` and ``a, a`` gives ``a``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ncnnpass.ir.errors import NcnnpassError

if TYPE_CHECKING:  # the measurement core does not import onnx; callers hand in a loaded model
    import onnx

__all__ = ["Charset", "DictionaryError", "read_dictionary", "dictionary_from_metadata", "greedy_decode"]


class DictionaryError(NcnnpassError):
    """A dictionary that cannot be read or does not fit the model."""


def _strip_line_end(line: str) -> str:
    # PaddleOCR: line.strip("\n").strip("\r\n") -- spaces inside a line (a " " entry) survive.
    return line.strip("\n").strip("\r\n")


def read_dictionary(path: str | os.PathLike) -> list[str]:
    """The dictionary entries of a PaddleOCR character file, one per line."""
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DictionaryError(f"{path}: dictionary is not UTF-8 ({exc})") from None
    # Split on "\n" only, like bytes.readlines(): str.splitlines would also split on U+2028 etc.
    lines = [_strip_line_end(line) for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise DictionaryError(f"{path}: dictionary is empty")
    return lines


def dictionary_from_metadata(model: onnx.ModelProto, key: str = "character") -> list[str] | None:
    """Dictionary stored in ONNX ``metadata_props`` (RapidOCR's ``character`` key), one entry a line."""
    for prop in model.metadata_props:
        if prop.key == key:
            lines = [_strip_line_end(line) for line in prop.value.split("\n")]
            if lines and lines[-1] == "":
                lines.pop()
            return lines or None
    return None


class Charset:
    """Blank + dictionary (+ space) as PaddleOCR's CTC label encoder/decoder build it."""

    def __init__(self, dictionary: Sequence[str], use_space_char: bool) -> None:
        self.dictionary = list(dictionary)
        self.use_space_char = bool(use_space_char)
        chars = list(self.dictionary) + ([" "] if self.use_space_char else [])
        self.characters: list[str] = ["blank"] + chars
        self.index: dict[str, int] = {}
        for i, ch in enumerate(self.characters):
            if i:  # the blank's name is not a character
                self.index[ch] = i  # duplicates: the last one wins, as in PaddleOCR
        self._lookup = np.array(self.characters, dtype=object)

    def __len__(self) -> int:
        return len(self.characters)

    @classmethod
    def fitting(cls, dictionary: Sequence[str] | None, classes: int) -> Charset | None:
        """The character set a model with ``classes`` outputs per frame decodes with: blank + dictionary
        + space (``use_space_char``, PaddleOCR's default) or without the space; None if neither fits."""
        if not dictionary:
            return None
        if classes == len(dictionary) + 2:
            return cls(dictionary, True)
        if classes == len(dictionary) + 1:
            return cls(dictionary, False)
        return None

    @property
    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.characters).encode("utf-8")).hexdigest()

    def encode_label(self, text: str) -> tuple[str, str]:
        """(label as the model can spell it, characters dropped because they are not in the dictionary)."""
        kept, dropped = [], []
        for ch in text:
            (kept if ch in self.index else dropped).append(ch)
        return "".join(kept), "".join(dropped)

    def decode(self, indices: np.ndarray) -> list[str]:
        """Greedy CTC decoding of per-frame class indices ``[N, T]`` (or ``[T]``)."""
        idx = np.asarray(indices)
        if idx.ndim == 1:
            idx = idx[None]
        keep = np.ones(idx.shape, dtype=bool)
        keep[:, 1:] = idx[:, 1:] != idx[:, :-1]
        keep &= idx != 0
        return ["".join(self._lookup[row[k]]) for row, k in zip(idx, keep, strict=True)]


def greedy_decode(probs: np.ndarray, characters: Sequence[str] | None = None) -> tuple[str, float]:
    """One line's ``T x classes`` scores to ``(text, confidence)`` as PaddleOCR's ``CTCLabelDecode``: per-frame
    argmax, repeats and blanks dropped, confidence = mean of the kept frames' max score (0 when nothing is
    kept). ``characters``: blank + dictionary (+ space), i.e. :attr:`Charset.characters`; without it the kept
    class ids are spelled ``<id>``."""
    p = np.asarray(probs)
    p = p.reshape(-1, p.shape[-1])
    idx = p.argmax(axis=1)
    best = p[np.arange(len(idx)), idx]
    keep = np.ones(idx.shape, dtype=bool)
    keep[1:] = idx[1:] != idx[:-1]
    keep &= idx != 0
    kept = idx[keep]
    if characters is not None:
        if kept.size and int(kept.max()) >= len(characters):
            raise DictionaryError(f"class {int(kept.max())} is outside the {len(characters)}-entry character list")
        text = "".join(characters[i] for i in kept)
    else:
        text = "".join(f"<{i}>" for i in kept)
    return text, float(best[keep].mean()) if keep.any() else 0.0
