"""Line texts of real words: Chinese (with the punctuation, digits and Latin words Chinese print has) and
English (capitals, numbers, punctuation), 1 to ~40 characters, drawn from a seeded generator.

The characters used are restricted to a model's dictionary when one is given (words that do not fit are
not drawn; punctuation and digits outside it are left out).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .words import WordList, chinese_words, english_words, restrict

__all__ = ["TextSource", "line_length"]

ZH_PUNCT = "，。、：；？！"
LATIN_END = ".,;:!?"
MAX_LEN = 40


def line_length(rng: np.random.Generator, max_len: int = MAX_LEN) -> int:
    """1..max_len characters, most lines 4..20 (log-normal around 10)."""
    return int(np.clip(round(rng.lognormal(np.log(10.0), 0.75)), 1, max_len))


def _number(rng: np.random.Generator) -> str:
    kind = rng.integers(5)
    if kind == 0:
        return str(int(rng.integers(1, 100)))
    if kind == 1:
        return str(int(rng.integers(1950, 2031)))
    if kind == 2:
        return f"{rng.uniform(0, 100):.1f}%"
    if kind == 3:
        return f"{rng.uniform(1, 999):.2f}"
    return f"{int(rng.integers(1, 13))}-{int(rng.integers(1, 29))}"


class TextSource:
    """Draws line texts; ``dictionary`` restricts the characters (see the module docstring)."""

    def __init__(self, dictionary: Sequence[str] | None = None) -> None:
        self.allowed = set(dictionary) | {" "} if dictionary else None
        self._zh: WordList | None = None
        self._en: WordList | None = None

    @property
    def zh(self) -> WordList:
        if self._zh is None:
            self._zh = restrict(chinese_words(), self.allowed)
        return self._zh

    @property
    def en(self) -> WordList:
        if self._en is None:
            self._en = restrict(english_words(), self.allowed)
        return self._en

    def _ok(self, text: str) -> str:
        return text if self.allowed is None else "".join(c for c in text if c in self.allowed)

    def latin(self, rng: np.random.Generator, length: int) -> str:
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < length:
            r = rng.random()
            if r < 0.12:
                word = _number(rng)
            else:
                word = self.en.draw(rng)
                if r < 0.3:
                    word = word.capitalize()
                elif r < 0.34:
                    word = word.upper()
            if parts and rng.random() < 0.12:
                parts[-1] += rng.choice(list(LATIN_END[:4]))
            parts.append(word)
        text = " ".join(parts)
        if len(text) > length + 4:  # trim whole words where possible
            cut = text.rfind(" ", 0, length + 1)
            text = text[:cut] if cut > 0 else text[:length]
        if length > 6 and rng.random() < 0.3:
            text += rng.choice(list(LATIN_END))
        return self._ok(text).strip() or self._ok("a")

    def chinese(self, rng: np.random.Generator, length: int) -> str:
        tokens: list[tuple[str, bool]] = []  # (text, may be cut)
        size = 0
        while size < length:
            r = rng.random()
            if tokens and r < 0.08 and tokens[-1][0][-1] not in ZH_PUNCT:
                tok = (str(rng.choice(list(ZH_PUNCT[:3]))), False)
            elif r < 0.11:
                tok = (_number(rng), False)
            elif r < 0.13:
                tok = (self.en.draw(rng).capitalize(), False)
            else:
                tok = (self.zh.draw(rng), True)
            tokens.append(tok)
            size += len(tok[0])
        if size > length and len(tokens) > 1 and not tokens[-1][1]:
            tokens.pop()  # never cut a number or a Latin word
        text = "".join(t for t, _ in tokens)
        text = (text[:length] if tokens[-1][1] else text).lstrip(ZH_PUNCT)
        if length > 6 and rng.random() < 0.3 and text and text[-1] not in ZH_PUNCT:
            text += str(rng.choice(["。", "！", "？", "："]))
        return self._ok(text) or self.zh.words[0]
