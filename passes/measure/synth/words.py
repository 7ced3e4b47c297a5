"""Real words for the built-in text, from word lists Debian ships (read at run time, never copied here).

- English: ``/usr/share/dict/american-english`` (Debian ``wamerican``, SCOWL; free to use and copy):
  ASCII alphabetic entries (possessives and accented words left out).
- Chinese: jieba's ``dict.txt`` (Debian ``python3-jieba``, MIT licence): ~350,000 words with corpus
  frequencies; words of CJK ideographs only, the most frequent :data:`CHINESE_TOP` kept, drawn with
  probability proportional to the square root of their frequency (common words dominate, rare ones occur).

Both lists can be filtered to a model's dictionary (:func:`restrict`). Missing lists raise
:class:`WordListMissing` naming the package.
"""

from __future__ import annotations

import functools
import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ncnnpass.ir.errors import NcnnpassError

__all__ = ["WordList", "WordListMissing", "english_words", "chinese_words", "restrict", "CHINESE_TOP"]

CHINESE_TOP = 50000
ENGLISH_FILES = ("/usr/share/dict/american-english", "/usr/share/dict/words")
JIEBA_PATTERNS = ("/usr/lib/python3/dist-packages/jieba/dict.txt", "/usr/lib/python3*/dist-packages/jieba/dict.txt",
                  "/usr/share/python3-jieba/dict.txt")


class WordListMissing(NcnnpassError):
    """A word list the built-in text needs is not installed."""


@dataclass(frozen=True)
class WordList:
    words: tuple[str, ...]
    weights: np.ndarray  #: drawing probabilities, sum 1
    source: str

    def draw(self, rng: np.random.Generator) -> str:
        return self.words[int(rng.choice(len(self.words), p=self.weights))]


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff"


@functools.cache
def english_words() -> WordList:
    path = os.environ.get("NCNNPASS_ENGLISH_WORDS") or next((p for p in ENGLISH_FILES if os.path.isfile(p)), None)
    if not path:
        raise WordListMissing(f"no English word list (looked for {', '.join(ENGLISH_FILES)}): install Debian's "
                              f"wamerican (bash .ci/install does), or give --images")
    with open(path, encoding="utf-8", errors="replace") as fh:
        words = tuple(w for w in (line.strip() for line in fh) if w.isascii() and w.isalpha())
    return WordList(words, np.full(len(words), 1.0 / len(words)), path)


@functools.cache
def chinese_words(top: int = CHINESE_TOP) -> WordList:
    path = os.environ.get("NCNNPASS_CHINESE_WORDS")
    if not path:
        for pattern in JIEBA_PATTERNS:
            hits = sorted(glob.glob(pattern))
            if hits:
                path = hits[0]
                break
    if not path:
        raise WordListMissing(f"no Chinese word list (looked for {', '.join(JIEBA_PATTERNS)}): install Debian's "
                              f"python3-jieba (bash .ci/install does), or give --images")
    entries = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit() and all(_is_cjk(c) for c in parts[0]):
                entries.append((int(parts[1]), parts[0]))
    entries.sort(key=lambda e: (-e[0], e[1]))
    entries = entries[:top]
    freq = np.sqrt(np.array([f for f, _ in entries], dtype=np.float64))
    return WordList(tuple(w for _, w in entries), freq / freq.sum(), path)


def restrict(words: WordList, allowed: Sequence[str] | set[str] | None) -> WordList:
    """Only the words every character of which is in ``allowed`` (None: all)."""
    if allowed is None:
        return words
    allowed = set(allowed)
    keep = [i for i, w in enumerate(words.words) if all(c in allowed for c in w)]
    if not keep:
        raise NcnnpassError(f"no word of {words.source} can be spelled with the model's dictionary")
    w = words.weights[keep]
    return WordList(tuple(words.words[i] for i in keep), w / w.sum(), words.source)
