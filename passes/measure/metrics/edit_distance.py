"""Levenshtein distance and character error rate (CER) of recognised text against labels."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["edit_distance", "cer"]


def edit_distance(a: str, b: str) -> int:
    """Insertions + deletions + substitutions that turn ``a`` into ``b`` (unit costs)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(predictions: Sequence[str], labels: Sequence[str]) -> float:
    """Corpus CER: total edit distance over total label characters (0 for no label characters and no
    predicted ones; a prediction against an empty label counts its length against 1)."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    edits = sum(edit_distance(p, t) for p, t in zip(predictions, labels, strict=True))
    chars = sum(len(t) for t in labels)
    if chars == 0:
        return 0.0 if edits == 0 else float(edits)
    return edits / chars
