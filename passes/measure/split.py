"""A seeded, stable split of samples into a calibration part and a held-out part.

Each sample goes to the held-out part when ``sha256(seed, provenance key)`` read as a number in [0, 1) is
below ``held_out``. The decision depends on the sample alone, so adding or removing other samples never
moves a sample to the other part, and the same seed gives the same split on every machine. Both parts
keep the samples' order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from ncnnpass.ir.errors import NcnnpassError

from .samples import Sample

__all__ = ["Split", "split_samples", "split_position"]


@dataclass
class Split:
    calibration: list[Sample]
    held_out: list[Sample]

    def describe(self) -> str:
        return f"{len(self.calibration)} for calibration, {len(self.held_out)} held out"


def split_position(key: str, seed: int = 0) -> float:
    """Where a sample falls in [0, 1) for ``seed``."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_samples(samples: Sequence[Sample], held_out: float = 0.5, seed: int = 0) -> Split:
    """Split by provenance key (see the module docstring); ``held_out`` is the expected share."""
    if not 0.0 <= held_out <= 1.0:
        raise NcnnpassError(f"held-out share must be within [0, 1], got {held_out}")
    out = Split([], [])
    for s in samples:
        key = s.provenance.key or str(s.provenance)
        (out.held_out if split_position(key, seed) < held_out else out.calibration).append(s)
    return out
