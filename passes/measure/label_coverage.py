"""Label characters a model cannot spell: those outside its dictionary (PaddleOCR's label encoder drops
them silently; here they are counted and reported)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .samples import Sample

__all__ = ["LabelCoverage", "label_coverage"]


@dataclass
class LabelCoverage:
    characters: Counter = field(default_factory=Counter)  #: character -> occurrences outside the dictionary
    labels: int = 0  #: labels looked at
    affected: int = 0  #: labels with at least one such character
    first: list[str] = field(default_factory=list)  #: provenance of the first affected labels

    @property
    def complete(self) -> bool:
        return not self.characters

    def describe(self, shown: int = 10) -> str:
        if self.complete:
            return f"every character of {self.labels} labels is in the dictionary"
        chars = ", ".join(f"{c!r} x{n}" for c, n in self.characters.most_common(shown))
        more = f" and {len(self.characters) - shown} more" if len(self.characters) > shown else ""
        return (f"{sum(self.characters.values())} label characters outside the model's dictionary in "
                f"{self.affected} of {self.labels} labels: {chars}{more} (first: {'; '.join(self.first)})")


def _texts(sample: Sample) -> Iterable[str]:
    if sample.text is not None:
        yield sample.text
    for box in sample.boxes or ():
        if not box.ignore:
            yield box.text


def label_coverage(samples: Iterable[Sample], dictionary: Sequence[str], use_space_char: bool = True,
                   first: int = 3) -> LabelCoverage:
    """Count the label characters outside ``dictionary`` (plus ``" "`` when ``use_space_char``)."""
    known = set(dictionary) | ({" "} if use_space_char else set())
    out = LabelCoverage()
    for s in samples:
        for text in _texts(s):
            out.labels += 1
            missing = [c for c in text if c not in known]
            if missing:
                out.affected += 1
                out.characters.update(missing)
                if len(out.first) < first:
                    out.first.append(str(s.provenance))
    return out
